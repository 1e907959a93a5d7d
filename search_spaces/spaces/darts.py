"""The DARTS cell space (Liu, Simonyan & Yang, ICLR 2019) on the CIFAR evaluation network.

A member is a :class:`Genotype` (the fields of quark0/darts ``genotypes.py``): for the normal and
the reduction cell, 4 intermediate nodes, each with 2 ``(op, input)`` pairs, where input 0 / 1
are the outputs of the previous-but-one / previous cell and input ``k + 2`` is intermediate
node ``k``; the cell output concatenates nodes ``(2, 3, 4, 5)``. Genotypes never use ``none``.

Canonical form: a node computes ``op1(h_a) + op2(h_b)``, which does not depend on the order
of its two pairs, so :class:`Genotype` stores each node's pairs sorted by input index (ties,
only possible outside this space, by op name). Two genotypes that differ only in that order are
the same member and compare equal; e.g. the paper's DARTS_V2 normal node 2 ``[(sep_conv_3x3, 1),
(skip_connect, 0)]`` is stored as ``((skip_connect, 0), (sep_conv_3x3, 1))``. Hence
``decode(encode(g)) == g`` for every member.

Encoding (24 categorical variables, cell type ``t`` in normal/reduce, node ``i`` in 0..3):
``t.node{i}.inputs`` is the unordered pair of distinct inputs among the ``i + 2`` available
states (C(i+2, 2) = 1, 3, 6, 10 values, lexicographic, labelled ``"a,b"``), ``t.node{i}.op_a``
the op on the smaller input and ``t.node{i}.op_b`` the op on the larger (7 non-none ops each).
Size (1*3*6*10)^2 * 7^16; every member has 128 neighbours.

Ops (C -> C, stride s = 2 on a reduction cell's edges from inputs 0 and 1; quark0/darts
``operations.py`` with affine BN; in this evaluation network pools are not followed by BN):
max_pool_3x3 (pad 1), avg_pool_3x3 (pad 1, count_include_pad=False), skip_connect (identity, or
FactorizedReduce for s = 2), sep_conv_3x3 / 5x5 (ReLU-DW-PW-BN twice), dil_conv_3x3 / 5x5
(ReLU-DW dilation 2-PW-BN once).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from search_spaces.blocks import classifier_head
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.spaces.base import SearchSpace, Variable

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The 8 DARTS primitives in quark0/darts order (the alpha column order of the search network)."""

OPS: tuple[str, ...] = PRIMITIVES[1:]
"""The 7 ops a genotype may use (every primitive but ``none``), in the index order of the encoding."""

STEPS = 4
CONCAT: tuple[int, ...] = (2, 3, 4, 5)
CELL_TYPES: tuple[str, ...] = ("normal", "reduce")

Pair = tuple[str, int]


def _canonical_cell(pairs: Iterable[Any], field: str) -> tuple[Pair, ...]:
    """List of ``(op, input)`` pairs -> tuple with each node's two pairs sorted by (input, op)."""
    try:
        items = [(str(op), int(src)) for op, src in pairs]
    except (TypeError, ValueError):
        raise InputError(f"Genotype.{field} must be a sequence of (op, input) pairs, got {pairs!r}") from None
    if len(items) % 2:
        raise InputError(f"Genotype.{field} must hold 2 (op, input) pairs per node, got {len(items)} pairs")
    out: list[Pair] = []
    for k in range(0, len(items), 2):
        first, second = items[k], items[k + 1]
        out += sorted((first, second), key=lambda p: (p[1], p[0]))
    return tuple(out)


@dataclass(frozen=True)
class Genotype:
    """DARTS genotype (fields as quark0/darts' namedtuple), stored canonically (module docstring).

    Accepts lists and ranges (``Genotype(*darts_genotype)`` converts a quark0/darts namedtuple);
    stores tuples, so it is hashable.
    """

    normal: tuple[Pair, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Pair, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for field in ("normal", "reduce"):
            object.__setattr__(self, field, _canonical_cell(getattr(self, field), field))
        for field in ("normal_concat", "reduce_concat"):
            try:
                value = tuple(int(v) for v in getattr(self, field))
            except (TypeError, ValueError):
                raise InputError(f"Genotype.{field} must be a sequence of node indices") from None
            object.__setattr__(self, field, value)

    def cell(self, cell_type: str) -> tuple[Pair, ...]:
        """The pairs of the ``"normal"`` or ``"reduce"`` cell."""
        return self.normal if cell_type == "normal" else self.reduce

    def concat(self, cell_type: str) -> tuple[int, ...]:
        return self.normal_concat if cell_type == "normal" else self.reduce_concat


# Published genotypes (quark0/darts cnn/genotypes.py), written as in that file; stored canonically.
DARTS_V1 = Genotype(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    reduce_concat=[2, 3, 4, 5],
)
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)
DARTS = DARTS_V2


def input_pairs(node: int) -> tuple[tuple[int, int], ...]:
    """Unordered pairs of distinct inputs of intermediate node ``node`` (0..3), lexicographic."""
    return tuple(combinations(range(node + 2), 2))


def check_genotype(arch: object) -> Genotype:
    """Return ``arch`` if it is a member of the DARTS space, else raise ValueError saying why."""
    if not isinstance(arch, Genotype):
        raise InputError(f"DARTS member must be a Genotype, got {type(arch).__name__}")
    for cell_type in CELL_TYPES:
        pairs = arch.cell(cell_type)
        if len(pairs) != 2 * STEPS:
            raise InputError(f"{cell_type} cell must have {STEPS} nodes (8 pairs), got {len(pairs)} pairs")
        if arch.concat(cell_type) != CONCAT:
            raise InputError(f"{cell_type}_concat must be {list(CONCAT)}, got {list(arch.concat(cell_type))}")
        for k, (op, src) in enumerate(pairs):
            node = k // 2
            if op not in OPS:
                raise InputError(f"{cell_type} node {node + 2}: op {op!r} is not one of {OPS}")
            if not 0 <= src < node + 2:
                raise InputError(f"{cell_type} node {node + 2}: input {src} must be in 0..{node + 1}")
        for node in range(STEPS):
            if pairs[2 * node][1] == pairs[2 * node + 1][1]:
                raise InputError(f"{cell_type} node {node + 2}: both pairs read input {pairs[2 * node][1]}; "
                                 "the two inputs of a node must differ")
    return arch


class DartsSpace(SearchSpace):
    """DARTS cells on NetworkCIFAR (no auxiliary head, no drop path): (B, 3, H, W) -> (B, num_classes).

    ``layers`` cells, reductions at ``layers // 3`` and ``2 * layers // 3``; H and W must stay even
    at each reduction (FactorizedReduce), e.g. 32 or 16 with the default layout.
    """

    name = "darts"

    def __init__(self, C: int = 36, layers: int = 20, num_classes: int = 10,
                 input_shape: tuple[int, int, int] = (3, 32, 32)) -> None:
        if C < 1 or C % 2 or layers < 1 or num_classes < 1:
            raise InputError(f"DartsSpace needs an even C >= 2 and layers, num_classes >= 1; got C={C}, "
                             f"layers={layers}, num_classes={num_classes}")
        if len(input_shape) != 3:
            raise InputError(f"input_shape must be (channels, height, width), got {input_shape}")
        self.C = C
        self.layers = layers
        self.num_classes = num_classes
        self.input_shape = tuple(int(d) for d in input_shape)
        variables = []
        for cell_type in CELL_TYPES:
            for node in range(STEPS):
                pairs = tuple(f"{a},{b}" for a, b in input_pairs(node))  # plain strings: Optuna/JSON friendly
                variables += [Variable(f"{cell_type}.node{node}.inputs", pairs),
                              Variable(f"{cell_type}.node{node}.op_a", OPS),
                              Variable(f"{cell_type}.node{node}.op_b", OPS)]
        self.variables = tuple(variables)

    def encode(self, arch: Hashable) -> np.ndarray:
        """Genotype -> int64 vector of 24 indices (per cell type and node: inputs, op_a, op_b)."""
        genotype = check_genotype(arch)
        out = []
        for cell_type in CELL_TYPES:
            pairs = genotype.cell(cell_type)
            for node in range(STEPS):
                (op_a, a), (op_b, b) = pairs[2 * node], pairs[2 * node + 1]  # a < b (canonical)
                out += [input_pairs(node).index((a, b)), OPS.index(op_a), OPS.index(op_b)]
        return np.array(out, dtype=np.int64)

    def decode_indices(self, indices: tuple[int, ...]) -> Genotype:
        cells: dict[str, list[Pair]] = {}
        it = iter(indices)
        for cell_type in CELL_TYPES:
            pairs: list[Pair] = []
            for node in range(STEPS):
                a, b = input_pairs(node)[next(it)]
                pairs += [(OPS[next(it)], a), (OPS[next(it)], b)]
            cells[cell_type] = pairs
        return Genotype(cells["normal"], CONCAT, cells["reduce"], CONCAT)

    # ----------------------------------------------------------------------- network
    def reduction_layers(self) -> tuple[int, ...]:
        """Indices of the reduction cells (quark0/darts: ``layers // 3`` and ``2 * layers // 3``)."""
        return tuple(sorted({self.layers // 3, 2 * self.layers // 3}))

    def to_graph(self, arch: Hashable) -> ArchGraph:
        """Genotype -> the evaluation network NetworkCIFAR (validated): (3, H, W) -> (num_classes,)."""
        genotype = check_genotype(arch)
        g = ArchGraph("darts")
        x = g.add("input", "input", shape=list(self.input_shape))
        c_curr = 3 * self.C
        stem = g.add("stem", "conv", [x], block="stem:stem", out=c_curr, kernel=3, order="conv-bn")
        s0 = s1 = stem
        c_curr = self.C
        reduction_prev = False
        reductions = self.reduction_layers()
        for i in range(self.layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            out = _cell(g, f"cell{i}", s0, s1, genotype, c_curr, reduction, reduction_prev)
            s0, s1 = s1, out
            reduction_prev = reduction
        classifier_head(g, s1, self.num_classes)
        g.validate()
        return g


def _edge_op(g: ArchGraph, x: str, node: str, op: str, channels: int, stride: int, block: str) -> str:
    """One DARTS op, eval version (affine BN, no BN after pools): (C, H, W) -> (C, H/s, W/s)."""
    if op == "max_pool_3x3":
        return g.add(node, "pool", [x], block=block, kind="max", kernel=3, stride=stride, padding=1)
    if op == "avg_pool_3x3":
        return g.add(node, "pool", [x], block=block, kind="avg", kernel=3, stride=stride, padding=1,
                     count_include_pad=False)
    if op == "skip_connect":
        if stride == 1:
            return g.add(node, "identity", [x], block=block)
        return g.add(node, "factorized_reduce", [x], block=block, out=channels)
    if op in ("sep_conv_3x3", "sep_conv_5x5"):
        kernel = int(op[-1])
        return g.add(node, "sep_conv", [x], block=block, out=channels, kernel=kernel, stride=stride, repeats=2)
    if op in ("dil_conv_3x3", "dil_conv_5x5"):
        kernel = int(op[-1])
        return g.add(node, "sep_conv", [x], block=block, out=channels, kernel=kernel, stride=stride,
                     dilation=2, repeats=1)
    raise InputError(f"unknown DARTS op {op!r}")


def _cell(g: ArchGraph, name: str, s0: str, s1: str, genotype: Genotype, channels: int, reduction: bool,
          reduction_prev: bool) -> str:
    """quark0/darts eval ``Cell``: (C_pp, H0, W0), (C_p, H, W) -> (4C, H/r, W/r), r = 2 if reduction."""
    cell_type = "reduce" if reduction else "normal"
    block = f"darts_{cell_type}_cell:{name}"
    if reduction_prev:
        p0 = g.add(f"{name}.preprocess0", "factorized_reduce", [s0], block=block, out=channels)
    else:
        p0 = g.add(f"{name}.preprocess0", "conv", [s0], block=block, out=channels, kernel=1, order="relu-conv-bn")
    p1 = g.add(f"{name}.preprocess1", "conv", [s1], block=block, out=channels, kernel=1, order="relu-conv-bn")
    states = [p0, p1]
    pairs = genotype.cell(cell_type)
    for node in range(STEPS):
        terms = []
        for slot in (0, 1):
            op, src = pairs[2 * node + slot]
            stride = 2 if reduction and src < 2 else 1
            terms.append(_edge_op(g, states[src], f"{name}.node{node + 2}.{slot}.{op}", op, channels, stride, block))
        states.append(g.add(f"{name}.node{node + 2}", "identity", terms, merge="sum", block=block))
    return g.add(f"{name}.concat", "identity", [states[k] for k in genotype.concat(cell_type)], merge="concat",
                 block=block)
