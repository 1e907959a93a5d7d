"""DARTS on a user's own cell space through ``darts_cell()`` (no hand-written adapter): the generic
search network (on NB-201's cell it is AutoDL's network exactly), per-edge and per-node op choices,
derivation to a member of the space, a planted solution, and refusals of spaces that do not qualify."""

from __future__ import annotations

import re
from collections.abc import Hashable
from functools import partial

import numpy as np
import pytest
import torch
from test_darts import oriented_data
from torch import nn

from nas.darts import CellAdapter, CellEdge, CellSpec, DartsConfig, adapter_for, build_supernet, darts_search
from nas.darts.cells import CellSearchNetwork, NB201SearchNetwork, nb201_cell
from nas.darts.supernet import ReLUConvBN
from search_spaces import blocks
from search_spaces.ir import ArchGraph
from search_spaces.layers import Zero
from search_spaces.spaces.base import SearchSpace, Variable
from search_spaces.spaces.binary import BinarySpace
from search_spaces.spaces.macro import MacroSpace
from search_spaces.spaces.nb201 import EDGES, NB201_OPS, NB201Space

OPS = ("none", "skip_connect", "conv_1x1", "conv_3x3", "avg_pool_3x3")


def search_op(name: str, channels: int) -> nn.Module:
    """The user's op vocabulary for the search network (BN without affine, as DARTS does)."""
    if name == "none":
        return Zero(1)
    if name == "skip_connect":
        return nn.Identity()
    if name in ("conv_1x1", "conv_3x3"):
        return ReLUConvBN(channels, channels, int(name[-1]))
    return nn.AvgPool2d(3, 1, 1, count_include_pad=False)


def graph_op(g: ArchGraph, x: str, node: str, name: str, channels: int) -> str:
    """The same op in the evaluation network's graph."""
    if name == "none":
        return g.add(node, "zero", [x])
    if name == "skip_connect":
        return g.add(node, "identity", [x])
    if name in ("conv_1x1", "conv_3x3"):
        return g.add(node, "conv", [x], out=channels, kernel=int(name[-1]), order="relu-conv-bn")
    return g.add(node, "pool", [x], kind="avg", kernel=3, stride=1, padding=1, count_include_pad=False)


class TinyCellSpace(SearchSpace):
    """A user's cell space: 4 nodes; edges 1<-0, 2<-0, 2<-1, 3<-2 choose their op, 3<-0 is a plain
    connection, and node 2 applies an op of its own to its summed inputs (a per-node choice). One
    stage of 2 cells at 8 channels."""

    name = "tiny_cell"
    CHOICES = ("e1_0", "e2_0", "e2_1", "e3_2", "n2")
    num_classes = 4

    def __init__(self) -> None:
        self.variables = tuple(Variable(name, OPS) for name in self.CHOICES)

    def encode(self, arch: Hashable) -> np.ndarray:
        return np.array([OPS.index(op) for op in arch], dtype=np.int64)  # type: ignore[union-attr]

    def decode_indices(self, indices: tuple[int, ...]) -> Hashable:
        return tuple(OPS[i] for i in indices)

    def to_graph(self, arch: Hashable) -> ArchGraph:
        ops = dict(zip(self.CHOICES, arch, strict=True))  # type: ignore[call-overload]
        g = ArchGraph("tiny-cell")
        x = blocks.conv(g, g.add("input", "input", shape=[3, 8, 8]), "stem", 8, order="conv-bn")
        for c in range(2):
            n1 = graph_op(g, x, f"c{c}.e1_0", ops["e1_0"], 8)
            n2 = g.add(f"c{c}.n2.sum", "identity", [graph_op(g, x, f"c{c}.e2_0", ops["e2_0"], 8),
                                                    graph_op(g, n1, f"c{c}.e2_1", ops["e2_1"], 8)], merge="sum")
            n2 = graph_op(g, n2, f"c{c}.n2", ops["n2"], 8)
            x = g.add(f"c{c}.n3", "identity", [graph_op(g, n2, f"c{c}.e3_2", ops["e3_2"], 8), x], merge="sum")
        x = g.add("lastact", "act", [g.add("lastbn", "norm", [x])])
        blocks.classifier_head(g, x, self.num_classes)
        return g

    def darts_cell(self) -> CellSpec:
        edges = (CellEdge(0, 1, "e1_0"), CellEdge(0, 2, "e2_0"), CellEdge(1, 2, "e2_1"), CellEdge(2, 3, "e3_2"),
                 CellEdge(0, 3))
        return CellSpec(nodes=4, edges=edges, node_variables={2: "n2"},
                        ops={op: partial(search_op, op) for op in OPS}, stages=((8, 2),))


def tiny_data(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_a_users_cell_space_gets_darts_and_a_member_of_its_own() -> None:
    space = TinyCellSpace()
    adapter = adapter_for(space)
    assert isinstance(adapter, CellAdapter) and adapter.ops == OPS
    assert adapter.edge_labels() == {"cell": list(TinyCellSpace.CHOICES)}
    x, y = tiny_data()
    config = DartsConfig(epochs=2, batch_size=12, arch_lr=3e-2, augment="crop-flip", seed=1)
    result = darts_search(space, config, x, y)
    assert isinstance(result.arch, tuple) and space.decode(space.encode(result.arch)) == result.arch
    alphas = np.asarray(result.history[-1]["alphas"]["cell"])
    assert alphas.shape == (5, 5) and result.history[0]["alphas"] != result.history[-1]["alphas"]
    assert result.arch == tuple(OPS[int(np.argmax(row))] for row in alphas)  # the strongest op per variable
    assert result.history[-1]["skip_connects"] == sum(op == "skip_connect" for op in result.arch)
    assert space.to_graph(result.arch).validate()  # the member's network (export, retraining) builds


def test_the_search_network_mixes_every_edge_and_node_position() -> None:
    """Weighting one op of one variable fully makes the network compute that member's cell; node 2's
    own op applies to the sum of its two incoming edges."""
    space = TinyCellSpace()
    net = build_supernet(adapter_for(space), DartsConfig(seed=0), (3, 8, 8), 4)
    cell = net.cells[0]
    assert len(cell.edges) == 5 and isinstance(cell.edges[4], nn.Identity) and set(cell.node_ops) == {"2"}
    weights = torch.zeros(5, 5)
    chosen = {"e1_0": "conv_3x3", "e2_0": "skip_connect", "e2_1": "avg_pool_3x3", "e3_2": "conv_1x1",
              "n2": "skip_connect"}
    for row, name in enumerate(TinyCellSpace.CHOICES):
        weights[row, OPS.index(chosen[name])] = 1.0
    x = torch.randn(2, 8, 8, 8)
    e = cell.edges
    n1 = e[0].ops[OPS.index("conv_3x3")](x)
    n2 = x + e[2].ops[OPS.index("avg_pool_3x3")](n1)
    expected = e[3].ops[OPS.index("conv_1x1")](n2) + x
    torch.testing.assert_close(cell(x, weights, 0.0), expected)


def autodl_cell(cell: nn.Module, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """AutoDL-Projects ``NAS201SearchCell.forward`` on the cell's own mixed edges: node j = the sum of
    edge (j <- i)(node i) over i < j, in the edge order of the arch string."""
    nodes = [x]
    for j in (1, 2, 3):
        nodes.append(sum(cell.edges[k](nodes[i], weights[k]) for k, (to, i) in enumerate(EDGES) if to == j))
    return nodes[3]


def test_the_nas_bench_201_search_network_is_the_generic_one_on_autodls_cell() -> None:
    """NB-201 qualifies through the protocol: its search network is the generic network on its cell,
    and that cell computes AutoDL's search cell; derivation is the NB-201 adapter's."""
    space = NB201Space(C=4, N=2)
    net = build_supernet(adapter_for(space), DartsConfig(seed=3), (3, 8, 8), 10)
    assert isinstance(net, NB201SearchNetwork) and isinstance(net, CellSearchNetwork)
    assert [type(m).__name__ for m in net.cells] == ["SearchCell"] * 2 + (["ResNetBasicBlock"] + ["SearchCell"] * 2) * 2
    weights = torch.softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(1)), -1)
    for cell, width in ((net.cells[0], 4), (net.cells[-1], 16)):
        x = torch.randn(3, width, 4, 4, generator=torch.Generator().manual_seed(width))
        torch.testing.assert_close(cell(x, weights, 0.0), autodl_cell(cell, x, weights), rtol=0, atol=0)
    generic = CellAdapter(space, nb201_cell(NB201_OPS, 4, 2))
    assert generic.edge_labels() == adapter_for(space).edge_labels()
    assert generic.derive({"cell": weights.numpy()}) == adapter_for(space).derive({"cell": weights.numpy()})


class OrientedCellSpace(SearchSpace):
    """Planted: one node whose own op is chosen (a per-node choice) after a 1x1 stem. Only the 3x3 conv
    can tell rows from columns (oriented_data); every other op commutes with the turn."""

    name = "oriented_cell"
    num_classes = 2
    variables = (Variable("node1", OPS[1:]),)

    def encode(self, arch: Hashable) -> np.ndarray:
        return np.array([OPS[1:].index(arch[0])])  # type: ignore[index]

    def decode_indices(self, indices: tuple[int, ...]) -> Hashable:
        return (OPS[1:][indices[0]],)

    def to_graph(self, arch: Hashable) -> ArchGraph:
        raise NotImplementedError

    def darts_cell(self) -> CellSpec:
        return CellSpec(nodes=2, edges=(CellEdge(0, 1),), node_variables={1: "node1"},
                        ops={op: partial(search_op, op) for op in OPS[1:]}, stages=((8, 1),),
                        stem=lambda c_in, c: nn.Conv2d(c_in, c, 1, bias=False))


def test_planted_solution_on_a_per_node_choice() -> None:
    x, y = oriented_data(256)
    config = DartsConfig(epochs=20, lr=0.1, batch_size=32, arch_lr=3e-3, augment="none", seed=0)
    result = darts_search(OrientedCellSpace(), config, x, y)
    assert result.arch == ("conv_3x3",)
    final = np.asarray(result.history[-1]["alphas"]["cell"][0])
    assert final.max() > 0.3 and result.history[-1]["valid_acc"] > 0.95


class UnlabelledSpace(TinyCellSpace):
    def darts_cell(self) -> CellSpec:
        spec = super().darts_cell()
        return CellSpec(nodes=4, edges=(*spec.edges[:3], CellEdge(2, 3)), ops=spec.ops)  # e3_2 and n2 unused


class MixedVocabularySpace(TinyCellSpace):
    def __init__(self) -> None:
        super().__init__()
        self.variables = (*self.variables[:4], Variable("n2", OPS[:3]))


class BadEdgeSpace(TinyCellSpace):
    def darts_cell(self) -> CellSpec:
        return CellSpec(nodes=4, edges=(CellEdge(2, 1, "e1_0"),), ops=super().darts_cell().ops)


@pytest.mark.parametrize(("space", "message"), [
    (MacroSpace(), "one op per cell edge or node"),
    (BinarySpace(), "one op per cell edge or node"),
    (UnlabelledSpace(), "variable(s) ['e3_2', 'n2'] are not op choices of the cell"),
    (MixedVocabularySpace(), "variable 'n2' has choices ['none', 'skip_connect', 'conv_1x1']"),
    (BadEdgeSpace(), "must be a CellEdge with 0 <= source < target < 4"),
])
def test_spaces_that_do_not_qualify_are_refused_with_the_reason(space: SearchSpace, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        adapter_for(space)
