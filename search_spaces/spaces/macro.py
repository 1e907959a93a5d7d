"""A macro (whole-network) search space over the classic building blocks.

Network, for an input map (C, H, W)::

    stem conv k3 (stem_width)  ->  stage 0  ->  [reduce]  stage 1  ->  ...  ->  global pool -> linear

Before every stage but the first, a 2x2 stride-2 max pool halves the resolution while both
height and width are still >= 2 (so every member's graph validates, even for 8x8 inputs; once
the map is 1x1 the remaining stages run at 1x1). Each stage is one decision tuple
(:class:`StageChoice`):

* ``block``  (categorical): the stage's building block kind, one of :data:`BLOCK_KINDS`;
* ``width``  (ordinal over ``widths``): output channels of the stage;
* ``depth``  (ordinal over ``depths``): number of blocks (layers) in the stage;
* ``kernel`` (ordinal over ``kernels``): filter size of the stage's main convs;
* ``skip``   (categorical False/True): a residual link around the whole stage
  (identity, or a 1x1 conv-BN projection when the stage changes the channel count).

How each kind maps (width w, depth d, kernel k), stage input channels c:

* ``conv``      VGG style: d x conv k x k -> BN -> ReLU, the first from c to w.
* ``residual``  d x basic ResNet blocks (k x k -> k x k, post-activation), a 1x1 projection
                shortcut in the first block when c != w.
* ``inception`` d x Inception modules whose branch widths split w in GoogLeNet's ratios
                (1x1: w/4, 3x3: the rest, kxk: w/8, pool-proj: w/8, each >= 1; reductions before
                the 3x3 / kxk convs have half the branch width); k is the kernel of the third
                ("5x5") branch (k=3 gives torchvision's GoogLeNet, k=5 the original).
* ``dense``     one DenseNet block of d layers (BN-ReLU-conv1x1 (4g) -> BN-ReLU-conv kxk (g)),
                growth g = max(1, w // 4), then a BN-ReLU-conv1x1 transition back to w (no pooling:
                the between-stage reduction does that).
* ``highway``   a 1x1 conv-BN-ReLU channel adaptation when c != w, then d highway layers
                (H = conv k x k - BN - ReLU, gate T = sigmoid(conv 3x3 + b), b = -1).
* ``attention`` a k x k conv-BN-ReLU embedding from c to w (local features before global mixing,
                as in hybrid ViTs), then d pre-norm transformer blocks attending over the H*W
                positions with a learned positional encoding; heads = the largest of 8, 4, 2, 1
                that divides w with head width >= 8 (else 1); MLP ratio 4.

Nodes carry ``block="<kind>:stage<s>.<i>"`` tags (``stem:stem``, ``reduce:stage<s>``,
``skip:stage<s>``, ``transition:stage<s>.0``, ``head:head`` for the glue).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from search_spaces.blocks import (
    attention_block,
    classifier_head,
    conv,
    dense_block,
    highway_block,
    inception_block,
    residual_block,
)
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.spaces.base import SearchSpace, Variable

BLOCK_KINDS: tuple[str, ...] = ("conv", "inception", "residual", "dense", "highway", "attention")
_FIELDS = ("block", "width", "depth", "kernel", "skip")


@dataclass(frozen=True)
class StageChoice:
    """The decisions of one stage (values, not indices)."""

    block: str
    width: int
    depth: int
    kernel: int
    skip: bool

    def __str__(self) -> str:
        return f"{self.block}(w{self.width},d{self.depth},k{self.kernel}{',skip' if self.skip else ''})"


@dataclass(frozen=True)
class MacroArch:
    """A member of :class:`MacroSpace`: one :class:`StageChoice` per stage, input to output."""

    stages: tuple[StageChoice, ...]

    def __str__(self) -> str:
        return " -> ".join(str(s) for s in self.stages)


def _check_values(name: str, values: Sequence[int], minimum: int, odd: bool = False) -> tuple[int, ...]:
    out = tuple(values)
    if not out or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in out):
        raise InputError(f"{name} must be a non-empty tuple of ints >= {minimum}, got {values!r}")
    if any(b <= a for a, b in pairwise(out)):
        raise InputError(f"{name} must be strictly increasing (an ordinal variable), got {values!r}")
    if odd and any(v % 2 == 0 for v in out):
        raise InputError(f"{name} must be odd ('same' padding keeps the resolution), got {values!r}")
    return out


def attention_heads(width: int) -> int:
    """Heads for an attention stage of ``width`` channels: largest of 8, 4, 2 dividing it with
    head width >= 8, else 1."""
    for heads in (8, 4, 2):
        if width % heads == 0 and width // heads >= 8:
            return heads
    return 1


def inception_split(width: int) -> tuple[int, int, int, int]:
    """Branch widths (1x1, 3x3, kxk, pool-proj) summing to ``width`` (>= 4), GoogLeNet ratios."""
    ch5 = pool = max(1, width // 8)
    ch1 = max(1, width // 4)
    return ch1, width - ch1 - ch5 - pool, ch5, pool


class MacroSpace(SearchSpace):
    """Stem -> ``num_stages`` stages (one block kind each) -> classifier; see the module docstring.

    Variables, per stage s: ``stage<s>.block``, ``stage<s>.width``, ``stage<s>.depth``,
    ``stage<s>.kernel``, ``stage<s>.skip`` (in that order, stage by stage). ``blocks`` restricts
    the block kinds (a sub-tuple of :data:`BLOCK_KINDS`). Widths must be >= 4 (an Inception
    module has four branches) and kernels odd.
    """

    name = "macro"

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, num_stages: int = 3,
                 widths: Sequence[int] = (16, 32, 64, 128), depths: Sequence[int] = (1, 2, 3),
                 kernels: Sequence[int] = (3, 5), stem_width: int = 16,
                 blocks: Sequence[str] = BLOCK_KINDS) -> None:
        shape = tuple(int(d) for d in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"input_shape must be (C, H, W) of positive ints, got {input_shape!r}")
        if num_classes < 1 or num_stages < 1 or stem_width < 1:
            raise InputError("num_classes, num_stages and stem_width must be >= 1")
        unknown = [b for b in blocks if b not in BLOCK_KINDS]
        if not blocks or unknown or len(set(blocks)) != len(blocks):
            raise InputError(f"blocks must be distinct kinds from {BLOCK_KINDS}, got {blocks!r}")
        self.input_shape = shape
        self.num_classes = int(num_classes)
        self.num_stages = int(num_stages)
        self.stem_width = int(stem_width)
        self.widths = _check_values("widths", widths, 4)
        self.depths = _check_values("depths", depths, 1)
        self.kernels = _check_values("kernels", kernels, 1, odd=True)
        self.blocks = tuple(blocks)
        # resolution (H, W) of each stage and whether a reduction precedes it
        h, w = shape[1], shape[2]
        self.reduces: list[bool] = []
        self.resolutions: list[tuple[int, int]] = []
        for s in range(self.num_stages):
            reduce = s > 0 and min(h, w) >= 2
            if reduce:
                h, w = (h - 2) // 2 + 1, (w - 2) // 2 + 1
            self.reduces.append(reduce)
            self.resolutions.append((h, w))
        self.variables = []
        for s in range(self.num_stages):
            self.variables += [
                Variable(f"stage{s}.block", self.blocks),
                Variable(f"stage{s}.width", self.widths, ordinal=True),
                Variable(f"stage{s}.depth", self.depths, ordinal=True),
                Variable(f"stage{s}.kernel", self.kernels, ordinal=True),
                Variable(f"stage{s}.skip", (False, True)),
            ]

    def __repr__(self) -> str:
        return (f"MacroSpace(input_shape={self.input_shape}, num_classes={self.num_classes}, "
                f"num_stages={self.num_stages}, widths={self.widths}, depths={self.depths}, "
                f"kernels={self.kernels}, stem_width={self.stem_width}, blocks={self.blocks})")

    # ------------------------------------------------------------------------- encoding
    def encode(self, arch: Hashable) -> np.ndarray:
        if not isinstance(arch, MacroArch) or len(arch.stages) != self.num_stages:
            raise InputError(f"{self.name}: expected a MacroArch with {self.num_stages} stages, got {arch!r}")
        out = np.empty(len(self.variables), dtype=np.int64)
        i = 0
        for stage in arch.stages:
            for field in _FIELDS:
                var = self.variables[i]
                value = getattr(stage, field)
                matches = [j for j, c in enumerate(var.choices)
                           if c == value and isinstance(c, bool) == isinstance(value, bool)]
                if not matches:
                    raise InputError(f"{self.name}: {var.name}={value!r} is not one of {var.choices}")
                out[i] = matches[0]
                i += 1
        return out

    def decode_indices(self, indices: tuple[int, ...]) -> MacroArch:
        values = [var.choices[j] for var, j in zip(self.variables, indices, strict=True)]
        n = len(_FIELDS)
        return MacroArch(tuple(StageChoice(*values[s * n:(s + 1) * n]) for s in range(self.num_stages)))

    # ------------------------------------------------------------------------- network
    def to_graph(self, arch: Hashable) -> ArchGraph:
        """The network: input (C, H, W) -> logits (num_classes,); shapes validated."""
        self.encode(arch)  # checks membership
        assert isinstance(arch, MacroArch)
        g = ArchGraph(f"macro[{arch}]")
        x = g.add("input", "input", shape=list(self.input_shape))
        x = conv(g, x, "stem", self.stem_width, 3, block="stem:stem")
        channels = self.stem_width
        for s, stage in enumerate(arch.stages):
            if self.reduces[s]:
                x = g.add(f"reduce{s}", "pool", [x], block=f"reduce:stage{s}", kind="max", kernel=2, stride=2)
            x, channels = self._stage(g, x, channels, s, stage), stage.width
        classifier_head(g, x, self.num_classes)
        g.validate()
        return g

    def _stage(self, g: ArchGraph, x: str, c: int, s: int, st: StageChoice) -> str:
        """Add stage ``s`` on node ``x`` ((c, H, W)); returns its output node ((st.width, H, W))."""
        w, k, name = st.width, st.kernel, f"stage{s}"
        h = x
        if st.block == "conv":
            for i in range(st.depth):
                h = conv(g, h, f"{name}.{i}.conv", w, k, block=f"conv:{name}.{i}")
        elif st.block == "residual":
            for i in range(st.depth):
                h = residual_block(g, h, f"{name}.{i}", c if i == 0 else w, w, kernel=k)
        elif st.block == "inception":
            ch1, ch3, ch5, pool = inception_split(w)
            for i in range(st.depth):
                h = inception_block(g, h, f"{name}.{i}", ch1, max(1, ch3 // 2), ch3, max(1, ch5 // 2), ch5, pool,
                                    kernel5=k)
        elif st.block == "dense":
            h = dense_block(g, h, f"{name}.0", st.depth, max(1, w // 4), kernel=k)
            h = conv(g, h, f"{name}.0.transition", w, 1, order="bn-relu-conv", block=f"transition:{name}.0")
        elif st.block == "highway":
            if c != w:
                h = conv(g, h, f"{name}.adapt", w, 1, block=f"highway:{name}.0")
            for i in range(st.depth):
                h = highway_block(g, h, f"{name}.{i}", w, kernel=k)
        elif st.block == "attention":
            h = conv(g, h, f"{name}.embed", w, k, block=f"attention:{name}.0")
            for i in range(st.depth):
                h = attention_block(g, h, f"{name}.{i}", w, attention_heads(w), tokens=False, pos="learned")
        else:  # pragma: no cover - decode only produces known kinds
            raise InputError(f"unknown block kind {st.block!r}")
        if st.skip:
            shortcut = x
            if c != w:
                shortcut = conv(g, x, f"{name}.skip.proj", w, 1, order="conv-bn", block=f"skip:{name}")
            h = g.add(f"{name}.skip", "identity", [h, shortcut], merge="sum", block=f"skip:{name}")
        return h

