"""SpaceConformance (nas.testing) applied to every registered search space and to a user-written one."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from nas.testing import SpaceConformance
from search_spaces import blocks
from search_spaces.ir import ArchGraph
from search_spaces.spaces import SPACES, SearchSpace, Variable
from search_spaces.spaces.binary import BinarySpace
from search_spaces.spaces.darts import DartsSpace
from search_spaces.spaces.macro import MacroSpace
from search_spaces.spaces.nb201 import NB201Space


# ---------------------------------------------------------------------------------- a user-written space
class TinyConvSpace(SearchSpace):
    """A user's space: stem conv, one block (conv / residual / highway) of a searched width and
    kernel size, classifier. Members are plain ``(width, kernel, block)`` value tuples."""

    def __init__(self, widths: Sequence[int] = (8, 16, 32), kernels: Sequence[int] = (3, 5),
                 block_kinds: Sequence[str] = ("conv", "residual", "highway"), num_classes: int = 10,
                 input_shape: tuple[int, int, int] = (3, 16, 16), name: str = "tiny-conv") -> None:
        self.name = name
        self.num_classes = num_classes
        self.input_shape = input_shape
        self.variables = (Variable("width", tuple(widths), ordinal=True),
                          Variable("kernel", tuple(kernels), ordinal=True),
                          Variable("block", tuple(block_kinds)))

    def encode(self, arch: Hashable) -> np.ndarray:
        if not isinstance(arch, tuple) or len(arch) != len(self.variables):
            raise ValueError(f"{self.name}: expected a (width, kernel, block) tuple, got {arch!r}")
        out = []
        for var, value in zip(self.variables, arch, strict=True):
            if value not in var.choices:
                raise ValueError(f"{self.name}: {var.name}={value!r} is not one of {var.choices}")
            out.append(var.choices.index(value))
        return np.array(out, dtype=np.int64)

    def decode_indices(self, indices: tuple[int, ...]) -> Hashable:
        return tuple(var.choices[i] for var, i in zip(self.variables, indices, strict=True))

    def to_graph(self, arch: Hashable) -> ArchGraph:
        self.encode(arch)  # membership
        width, kernel, kind = arch  # type: ignore[misc]
        g = ArchGraph(f"{self.name} {arch}")
        x = g.add("input", "input", shape=list(self.input_shape))
        x = blocks.conv(g, x, "stem", width, kernel)
        if kind == "conv":
            x = blocks.conv(g, x, "body", width, kernel, block="conv:body")
        elif kind == "residual":
            x = blocks.residual_block(g, x, "body", width, width, kernel=kernel)
        else:
            x = blocks.highway_block(g, x, "body", width, kernel=kernel)
        blocks.classifier_head(g, x, self.num_classes)
        g.validate()
        return g


# ---------------------------------------------------------------------------------- the suites
class TestNB201Space(SpaceConformance):
    def make_space(self) -> SearchSpace:
        return NB201Space()


class TestNB201SmallNetwork(SpaceConformance):
    """A smaller skeleton and input: the graph checks again, on another configuration."""

    samples = 10

    def make_space(self) -> SearchSpace:
        return NB201Space(C=8, N=1, num_classes=5, input_shape=(1, 8, 8))


class TestDartsSpace(SpaceConformance):
    samples = 8  # 304-node networks: to_graph and the canonical hash dominate

    def make_space(self) -> SearchSpace:
        return DartsSpace()


class TestMacroSpace(SpaceConformance):
    def make_space(self) -> SearchSpace:
        return MacroSpace()


class TestMacroSpaceTinyInput(SpaceConformance):
    """8x8 digits input: the reductions stop at 1x1 and every member still validates."""

    def make_space(self) -> SearchSpace:
        return MacroSpace(input_shape=(1, 8, 8), num_classes=10, num_stages=4, blocks=("conv", "attention"))


class TestBinarySpace(SpaceConformance):
    def make_space(self) -> SearchSpace:
        return BinarySpace()


class TestUserWrittenSpace(SpaceConformance):
    def make_space(self) -> SearchSpace:
        return TinyConvSpace()


class TestDegenerateUserSpace(SpaceConformance):
    """Every variable has one value: one member, no neighbours; the generic checks must not crash."""

    def make_space(self) -> SearchSpace:
        return TinyConvSpace(widths=(8,), kernels=(3,), block_kinds=("residual",), name="tiny-conv-1")


def conformance_classes() -> list[type[SpaceConformance]]:
    return [c for c in globals().values()
            if isinstance(c, type) and issubclass(c, SpaceConformance) and c is not SpaceConformance]


def test_every_registered_space_has_a_conformance_class() -> None:
    covered = {type(cls().make_space()) for cls in conformance_classes()}
    missing = sorted(name for name, space_cls in SPACES.items() if space_cls not in covered)
    assert not missing, f"spaces without a SpaceConformance class in {__name__}: {missing}"


def test_the_degenerate_space_really_is_degenerate() -> None:
    space = TestDegenerateUserSpace().make_space()
    assert space.size == 1 and space.neighbours(space.decode([0, 0, 0])) == []
