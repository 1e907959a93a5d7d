"""DARTS on a user's own cell space, without a hand-written adapter: the space describes its cell.

Which spaces qualify: those whose every variable is the op of one cell position, with one mixed op
per categorical choice. A space opts in by defining ``darts_cell(self) -> CellSpec``:

* ``nodes``: the cell DAG's nodes ``0 .. nodes - 1``; node 0 is the cell input, the last node its output.
* ``edges``: :class:`CellEdge` ``(source, target, variable)``, ``source < target``: the edge applies the op
  the space's ``variable`` chooses to node ``source``; ``variable=None`` with an ``op`` makes a fixed
  edge, with neither a plain connection. A node is the sum of its incoming edges.
* ``node_variables``: ``{node: variable}`` for per-node op choices: the chosen op is applied to the
  node's summed inputs.
* ``ops``: the op vocabulary, every choice of those variables -> ``build(channels)``, a module
  (B, C, H, W) -> (B, C, H, W). All op variables have the same choices in the same order (the alpha
  columns); one variable may label several positions (their alphas are shared). Every variable of the
  space must be such an op choice (or have a single value).
* the skeleton, around the cells: ``stem`` (default Conv3x3 + BN to the first stage's channels),
  ``stages`` ``((channels, cells), ...)`` with an AutoDL ResNet basic block (stride 2) between stages,
  then BN-ReLU, global average pool, linear. ``skip_op``: the choice counted as a skip connection.

The search network mixes every op at every position (``softmax(α)`` per variable) and derives the
member whose every variable takes its strongest op (:class:`nas.darts.adapters.CellAdapter`). Built in: ``nb201`` and
``darts`` have adapters of their own (NB-201: AutoDL's network exactly; DARTS: each node's two inputs
are variables too, chosen as its two strongest mixed edges). Not qualifying: ``binary`` (a node type
is two bit variables and edges are on/off bits, not op choices) and ``macro`` (stage widths, depths and
kernels change shapes). The description is given, not read off the space's graphs: a member's graph
shows the op each edge has, not which variable chose it nor what the other choices would build.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from nas.darts.supernet import MixedOp, ResNetBasicBlock, SearchNetwork, nb201_op
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace
from search_spaces.spaces.nb201 import EDGES as NB201_EDGES

OpBuilder = Callable[[int], nn.Module]
"""``build(channels)`` -> a module (B, C, H, W) -> (B, C, H, W)."""


@dataclass(frozen=True)
class CellEdge:
    """Edge ``source -> target`` of the cell DAG: the op the space's ``variable`` chooses, or a fixed
    ``op`` (a key of :attr:`CellSpec.ops`), or (neither) a plain connection."""

    source: int
    target: int
    variable: str | None = None
    op: Hashable | None = None


def default_stem(in_channels: int, channels: int) -> nn.Module:
    """Conv3x3 (no bias) + BN: (B, C_in, H, W) -> (B, channels, H, W)."""
    return nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))


@dataclass(frozen=True)
class CellSpec:
    """A cell space as DARTS sees it (see the module docstring)."""

    nodes: int
    edges: tuple[CellEdge, ...]
    ops: Mapping[Hashable, OpBuilder]
    node_variables: Mapping[int, str] = field(default_factory=dict)
    stages: tuple[tuple[int, int], ...] = ((16, 1), (32, 1), (64, 1))
    stem: Callable[[int, int], nn.Module] = default_stem
    skip_op: Hashable | None = "skip_connect"

    def searched(self) -> list[str]:
        """The op variables in the order of first use: edges, then nodes."""
        names = [e.variable for e in self.edges if e.variable is not None] + list(self.node_variables.values())
        return list(dict.fromkeys(names))


class CellSearchNetwork(SearchNetwork):
    """The search network of a :class:`CellSpec`: (B, C_in, H, W) -> (B, num_classes).

    ``alphas["cell"]``: (op variables, ops), shared by every cell, initialised ``1e-3 · randn``.
    """

    def __init__(self, spec: CellSpec, ops: Sequence[Hashable], variables: Sequence[str], in_channels: int,
                 num_classes: int, aux_skip: bool = False, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        channels = spec.stages[0][0]
        self.stem = spec.stem(in_channels, channels)
        layers: list[nn.Module] = []
        for k, (width, cells) in enumerate(spec.stages):
            if k:
                layers.append(ResNetBasicBlock(channels, width))
                channels = width
            layers += [SearchCell(spec, ops, variables, channels, aux_skip) for _ in range(cells)]
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())
        self.classifier = nn.Linear(channels, num_classes)
        self._init_alphas({"cell": (len(variables), len(ops))}, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.arch_weights()["cell"]
        h = self.stem(x)
        for layer in self.cells:
            h = layer(h, weights, self.aux_skip_beta) if isinstance(layer, SearchCell) else layer(h)
        return self.classifier(F.adaptive_avg_pool2d(self.lastact(h), 1).flatten(1))


class SearchCell(nn.Module):
    """One cell of mixed ops: (B, C, H, W), weights (op variables, ops) -> (B, C, H, W)."""

    def __init__(self, spec: CellSpec, ops: Sequence[Hashable], variables: Sequence[str], channels: int,
                 aux_skip: bool) -> None:
        super().__init__()
        row = {name: k for k, name in enumerate(variables)}

        def build(op: Hashable, c: int, stride: int) -> nn.Module:
            return spec.ops[op](c)

        def position(variable: str | None, op: Hashable | None) -> tuple[nn.Module, int | None]:
            if variable is not None:
                return MixedOp(ops, channels, 1, build, aux_skip), row[variable]
            return (nn.Identity() if op is None else spec.ops[op](channels)), None

        built = [position(e.variable, e.op) for e in spec.edges]
        self.edges = nn.ModuleList(m for m, _ in built)
        self.edge_rows = [r for _, r in built]
        self.edge_ends = [(e.source, e.target) for e in spec.edges]
        nodes = sorted(spec.node_variables)
        self.node_ops = nn.ModuleDict({str(n): position(spec.node_variables[n], None)[0] for n in nodes})
        self.node_rows = {n: row[spec.node_variables[n]] for n in nodes}
        self.num_nodes = spec.nodes

    def forward(self, x: torch.Tensor, weights: torch.Tensor, aux_beta: float) -> torch.Tensor:
        states: list[torch.Tensor] = [x]
        for node in range(1, self.num_nodes):
            terms = [self._through(edge, self.edge_rows[k], states[source], weights, aux_beta)
                     for k, (edge, (source, target)) in enumerate(zip(self.edges, self.edge_ends, strict=True))
                     if target == node]
            h = terms[0]
            for term in terms[1:]:
                h = h + term
            if node in self.node_rows:
                h = self._through(self.node_ops[str(node)], self.node_rows[node], h, weights, aux_beta)
            states.append(h)
        return states[-1]

    @staticmethod
    def _through(module: nn.Module, row: int | None, x: torch.Tensor, weights: torch.Tensor,
               aux_beta: float) -> torch.Tensor:
        return module(x) if row is None else module(x, weights[row], aux_beta)


def nb201_cell(ops: Sequence[str], C: int, N: int) -> CellSpec:
    """NAS-Bench-201's cell (6 edges ``edge{to}<-{from}``, AutoDL's search ops: BN without affine or running
    statistics) on AutoDL's skeleton (N cells at C, 2C, 4C)."""
    return CellSpec(nodes=4, edges=tuple(CellEdge(src, to, f"edge{to}<-{src}") for to, src in NB201_EDGES),
                    ops={op: partial(nb201_op, op) for op in ops}, stages=((C, N), (2 * C, N), (4 * C, N)))


class NB201SearchNetwork(CellSearchNetwork):
    """AutoDL-Projects ``TinyNetworkDarts(C, N)``: stem Conv3x3 + BN; N search cells per stage at C, 2C, 4C
    with ResNet basic reduction blocks between; BN-ReLU; global pool; linear. One ``α`` (6, 5) shared by
    every cell. (B, C_in, H, W) -> (B, num_classes)."""

    def __init__(self, ops: Sequence[str], C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3,
                 aux_skip: bool = False, seed: int = 0) -> None:
        spec = nb201_cell(ops, C, N)
        super().__init__(spec, ops, spec.searched(), in_channels, num_classes, aux_skip, seed)


def check_cell_spec(space: SearchSpace, spec: CellSpec) -> list[str]:
    """The op variables of a valid description; InputError saying what is wrong and where otherwise."""
    where = f"space {space.name!r}: darts_cell()"
    if not isinstance(spec, CellSpec):
        raise InputError(f"{where} must return a nas.darts.CellSpec, got {type(spec).__name__}")
    if isinstance(spec.nodes, bool) or not isinstance(spec.nodes, int) or spec.nodes < 2:
        raise InputError(f"{where}: nodes must be an int >= 2 (node 0 the input, the last the output), "
                         f"got {spec.nodes!r}")
    by_name = {v.name: v for v in space.variables}
    for e in spec.edges:
        if not (isinstance(e, CellEdge) and 0 <= e.source < e.target < spec.nodes):
            raise InputError(f"{where}: edge {e!r} must be a CellEdge with 0 <= source < target < {spec.nodes}")
        if e.variable is None and e.op is not None and e.op not in spec.ops:
            raise InputError(f"{where}: fixed edge {e.source}->{e.target} has op {e.op!r}, not one of "
                             f"ops {list(spec.ops)}")
    fed = {e.target for e in spec.edges}
    unfed = [n for n in range(1, spec.nodes) if n not in fed]
    if unfed:
        raise InputError(f"{where}: node(s) {unfed} have no incoming edge; every node but 0 sums at least one")
    for node in spec.node_variables:
        if not (isinstance(node, int) and 0 < node < spec.nodes):
            raise InputError(f"{where}: node_variables key {node!r} must be a node in 1..{spec.nodes - 1}")
    variables = spec.searched()
    if not variables:
        raise InputError(f"{where}: no edge or node has a variable: there is nothing to search")
    for name in variables:
        if name not in by_name:
            raise InputError(f"{where}: variable {name!r} is not one of the space's variables {sorted(by_name)}")
        missing = [c for c in by_name[name].choices if c not in spec.ops]
        if missing:
            raise InputError(f"{where}: choices {missing} of variable {name!r} have no op in ops {list(spec.ops)}")
    first = by_name[variables[0]].choices
    for name in variables[1:]:
        if tuple(by_name[name].choices) != tuple(first):
            raise InputError(f"{where}: variable {name!r} has choices {list(by_name[name].choices)} but "
                             f"{variables[0]!r} has {list(first)}; DARTS mixes one op vocabulary: give every op "
                             "variable the same choices in the same order")
    other = [v.name for v in space.variables if v.name not in variables and v.cardinality > 1]
    if other:
        raise InputError(f"{where}: variable(s) {other} are not op choices of the cell; DARTS can search a space "
                         "whose every variable chooses the op of an edge or node (use another strategy)")
    if not spec.stages or any(len(s) != 2 or min(s) < 1 for s in spec.stages):
        raise InputError(f"{where}: stages must be ((channels, cells), ...) of positive ints, got {spec.stages!r}")
    return variables
