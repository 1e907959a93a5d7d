"""What DARTS needs from a search space whose choices are one op per cell edge.

An :class:`EdgeAdapter` says which candidate ops each edge mixes (the alpha columns), builds the
space's search network, and turns the architecture weights ``softmax(α)`` back into a member of
the space, so a DARTS search returns the same kind of architecture every other strategy returns
(and ``space.to_graph`` gives the network that export and retraining use).

Built in: the DARTS cell space (:class:`DartsAdapter`) and the NAS-Bench-201 cell space
(:class:`NB201Adapter`). Any other space whose variables are op choices of a cell's edges or nodes
opts in by describing its cell (``darts_cell(self) -> CellSpec``, :mod:`nas.darts.cells`; the
adapter is then :class:`CellAdapter`), or with an adapter of its own (``darts_adapter(self) -> EdgeAdapter``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np
import torch

from nas.darts.cells import CellSearchNetwork, CellSpec, NB201SearchNetwork, check_cell_spec
from nas.darts.supernet import DartsSearchNetwork, SearchNetwork
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace
from search_spaces.spaces.darts import CONCAT, PRIMITIVES, STEPS, DartsSpace, Genotype
from search_spaces.spaces.nb201 import EDGES as NB201_EDGES
from search_spaces.spaces.nb201 import NB201_OPS, NB201Space

if TYPE_CHECKING:
    from nas.darts.search import DartsConfig


class EdgeAdapter(ABC):
    """The contract between DARTS and a per-edge space.

    * ``ops``: the candidate ops of every edge, in alpha-column order.
    * :meth:`edge_labels`: per architecture-weight name (e.g. ``"normal"``, ``"reduce"``), one
      label per edge (alpha row).
    * :meth:`network`: the search network for ``input_shape`` (C, H, W) and ``num_classes``.
    * :meth:`derive`: ``{name: softmax(α) (edges, ops) as numpy}`` -> a member of the space.
    * :meth:`skip_connects`: skip connections in a member's normal cell (the collapse signal).
    """

    ops: tuple[str, ...]

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    @abstractmethod
    def edge_labels(self) -> dict[str, list[str]]: ...

    @abstractmethod
    def network(self, config: DartsConfig, input_shape: tuple[int, ...], num_classes: int) -> SearchNetwork: ...

    @abstractmethod
    def derive(self, weights: dict[str, np.ndarray]) -> Hashable: ...

    @abstractmethod
    def skip_connects(self, arch: Hashable) -> int: ...


class DartsAdapter(EdgeAdapter):
    """DARTS cells: 14 edges x 8 primitives per cell type; quark0/darts ``Network.genotype()``."""

    ops = PRIMITIVES

    def edge_labels(self) -> dict[str, list[str]]:
        labels = [f"node{i + 2}<-{j}" for i in range(STEPS) for j in range(i + 2)]
        return {"normal": labels, "reduce": list(labels)}

    def network(self, config: DartsConfig, input_shape: tuple[int, ...], num_classes: int) -> SearchNetwork:
        return DartsSearchNetwork(self.ops, config.init_channels, config.layers, num_classes, input_shape[0],
                                  aux_skip=config.aux_skip, seed=config.seed)

    def derive(self, weights: dict[str, np.ndarray]) -> Genotype:
        """Per node: the 2 strongest incoming edges (strength = max non-'none' weight), each with its
        strongest non-'none' op (ties: the lower index, as Python's sort and max give)."""
        return Genotype(normal=derive_cell(weights["normal"], self.ops), normal_concat=CONCAT,
                        reduce=derive_cell(weights["reduce"], self.ops), reduce_concat=CONCAT)

    def skip_connects(self, arch: Hashable) -> int:
        assert isinstance(arch, Genotype)
        return sum(op == "skip_connect" for op, _ in arch.normal)


def derive_cell(w: np.ndarray, ops: tuple[str, ...], steps: int = STEPS) -> list[tuple[str, int]]:
    """quark0/darts ``_parse``: softmax weights ``(edges, ops)`` -> ``[(op, input)] x 2 per node``."""
    none = ops.index("none") if "none" in ops else None
    gene: list[tuple[str, int]] = []
    start = 0
    for i in range(steps):
        rows = w[start:start + i + 2]
        usable = [k for k in range(len(ops)) if k != none]
        edges = sorted(range(i + 2), key=lambda j: -max(rows[j][k] for k in usable))[:2]
        for j in edges:
            best = max(usable, key=lambda k: (rows[j][k], -k))  # first index on ties
            gene.append((ops[best], j))
        start += i + 2
    return gene


class NB201Adapter(EdgeAdapter):
    """NAS-Bench-201 cells: 6 edges x 5 ops, one alpha for every cell (AutoDL ``TinyNetworkDarts``).

    The search network is the space's own skeleton (its C and N). Derivation is AutoDL's: each edge
    takes its strongest op, ``none`` included (it is a legal op of this space).
    """

    ops = NB201_OPS

    def edge_labels(self) -> dict[str, list[str]]:
        return {"cell": [f"edge{to}<-{src}" for to, src in NB201_EDGES]}

    def network(self, config: DartsConfig, input_shape: tuple[int, ...], num_classes: int) -> SearchNetwork:
        space = self.space
        assert isinstance(space, NB201Space)
        return NB201SearchNetwork(self.ops, space.C, space.N, num_classes, input_shape[0], aux_skip=config.aux_skip,
                                  seed=config.seed)

    def derive(self, weights: dict[str, np.ndarray]) -> tuple[str, ...]:
        return tuple(self.ops[int(np.argmax(row))] for row in weights["cell"])

    def skip_connects(self, arch: Hashable) -> int:
        return sum(op == "skip_connect" for op in arch)  # type: ignore[union-attr]


class CellAdapter(EdgeAdapter):
    """DARTS for a space that describes its cell (:class:`CellSpec`, from ``space.darts_cell()``).

    Derivation: every op variable takes its strongest op (``none``, when a choice, included); the
    space's other variables (single-valued) their only value.
    """

    def __init__(self, space: SearchSpace, spec: CellSpec) -> None:
        super().__init__(space)
        self.spec = spec
        self.variables = check_cell_spec(space, spec)
        self.ops = tuple(next(v for v in space.variables if v.name == self.variables[0]).choices)

    def edge_labels(self) -> dict[str, list[str]]:
        return {"cell": list(self.variables)}

    def network(self, config: DartsConfig, input_shape: tuple[int, ...], num_classes: int) -> SearchNetwork:
        return CellSearchNetwork(self.spec, self.ops, self.variables, input_shape[0], num_classes,
                                 aux_skip=config.aux_skip, seed=config.seed)

    def derive(self, weights: dict[str, np.ndarray]) -> Hashable:
        strongest = {name: int(np.argmax(row)) for name, row in zip(self.variables, weights["cell"], strict=True)}
        return self.space.decode_indices(tuple(strongest.get(v.name, 0) for v in self.space.variables))

    def skip_connects(self, arch: Hashable) -> int:
        if self.spec.skip_op is None or self.spec.skip_op not in self.ops:
            return 0
        skip = self.ops.index(self.spec.skip_op)
        chosen = dict(zip((v.name for v in self.space.variables), self.space.encode(arch).tolist(), strict=True))
        positions = [e.variable for e in self.spec.edges] + list(self.spec.node_variables.values())
        return sum(chosen[name] == skip for name in positions if name is not None)


def adapter_for(space: SearchSpace) -> EdgeAdapter:
    """The space's adapter; ValueError naming the usable spaces when its choices are not per-edge ops."""
    if isinstance(space, DartsSpace):
        return DartsAdapter(space)
    if isinstance(space, NB201Space):
        return NB201Adapter(space)
    make = getattr(space, "darts_adapter", None)
    if callable(make):
        adapter = make()
        if not isinstance(adapter, EdgeAdapter):
            raise InputError(f"space {space.name!r}: darts_adapter() must return an EdgeAdapter, got "
                             f"{type(adapter).__name__}")
        return adapter
    describe = getattr(space, "darts_cell", None)
    if callable(describe):
        return CellAdapter(space, describe())
    raise InputError(f"--strategy darts needs a space whose choices are one op per cell edge or node (darts, "
                     f"nb201, or a space that describes its cell with darts_cell(), see nas.darts.cells); space "
                     f"{space.name!r} is not one: use --space darts or --space nb201, or another strategy")


def build_supernet(adapter: EdgeAdapter, config: DartsConfig, input_shape: tuple[int, ...],
                   num_classes: int) -> SearchNetwork:
    """The adapter's search network with weights initialised from ``config.seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return adapter.network(config, tuple(input_shape), num_classes)
