"""COMBO's binary NAS space (Oh et al., NeurIPS 2019, section 5.4; QUVA-Lab/COMBO experiments/NAS).

A cell is a DAG on 7 nodes: node 0 is the cell input, node 6 its output, nodes 1..5 compute.
31 binary variables describe it (2^31 members):

* ``node{k}.t``, ``node{k}.s`` (k = 1..5): the node's type from its two bits ``(t, s)``:
  ``(0, 0)`` identity, ``(0, 1)`` max pool 3x3 (stride 1, pad 1), ``(1, 0)`` conv 3x3,
  ``(1, 1)`` conv 5x5; convs keep the channel count and are Conv (with bias) -> BN -> ReLU.
* ``edge{i}->{j}`` (0 <= i < j <= 6, the upper triangle row by row, 21 bits): node j reads node i.

A node's input is the sum of the outputs of the nodes it reads; the output node is that sum.
Nodes that cannot be reached from the input, or that do not reach the output, are pruned (COMBO's
``valid_net_topo``). A cell with no path from input to output carries no information: its output
is a zero map (COMBO scores such a cell as chance accuracy, which is what the network then gets).

Network (COMBO's CIFAR-10 model, ``n_ch_base=16``, 3 stages): stem Conv3x3 -> BN -> ReLU to C;
then per stage s: [max pool 2 -> Conv1x1 -> BN -> ReLU from C·2^(s-1) to C·2^s when s > 0], the
searched cell (the same cell in every stage); then max pool 2, flatten, linear. Max pools are
skipped once the map is 1x1, so small inputs (digits, 8x8) work with every member. COMBO's MNIST
variant is ``stages=2, channels=8``.
"""

from __future__ import annotations

from collections.abc import Hashable
from itertools import combinations

import networkx as nx
import numpy as np

from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.spaces.base import SearchSpace, Variable

NUM_NODES = 7
INPUT, OUTPUT = 0, NUM_NODES - 1
COMPUTE_NODES: tuple[int, ...] = tuple(range(1, NUM_NODES - 1))
EDGES: tuple[tuple[int, int], ...] = tuple(combinations(range(NUM_NODES), 2))
"""The 21 possible edges (i, j), i < j, in the order of the edge bits (upper triangle, row-major)."""
NODE_TYPES: dict[tuple[int, int], str] = {(0, 0): "identity", (0, 1): "max_pool_3x3", (1, 0): "conv_3x3",
                                         (1, 1): "conv_5x5"}

BinaryArch = tuple[int, ...]


def check_bits(arch: object) -> BinaryArch:
    """Return ``arch`` as a tuple of 31 ints in {0, 1}, or raise ValueError saying what is wrong."""
    n = 2 * len(COMPUTE_NODES) + len(EDGES)
    if isinstance(arch, (str, bytes)) or not isinstance(arch, (tuple, list, np.ndarray)):
        raise InputError(f"binary-space member must be a tuple of {n} bits, got {arch!r}")
    bits = tuple(int(b) for b in arch)
    if len(bits) != n or any(b not in (0, 1) for b in bits):
        raise InputError(f"binary-space member must be {n} bits (0/1): 10 node-type bits, then 21 edge bits; "
                         f"got {arch!r}")
    return bits


def cell_structure(arch: BinaryArch) -> tuple[dict[int, str], list[tuple[int, int]]]:
    """The pruned cell: ``({node: type}, [(i, j) edges])`` over the nodes on an input-to-output path.

    Both are empty when no path connects input and output.
    """
    bits = check_bits(arch)
    types = {k: NODE_TYPES[bits[2 * i], bits[2 * i + 1]] for i, k in enumerate(COMPUTE_NODES)}
    dag = nx.DiGraph()
    dag.add_nodes_from(range(NUM_NODES))
    dag.add_edges_from(e for e, bit in zip(EDGES, bits[2 * len(COMPUTE_NODES):], strict=True) if bit)
    if not nx.has_path(dag, INPUT, OUTPUT):
        return {}, []
    keep = (nx.descendants(dag, INPUT) | {INPUT}) & (nx.ancestors(dag, OUTPUT) | {OUTPUT})
    kept = dag.subgraph(keep)
    return {k: types[k] for k in sorted(keep) if k in types}, sorted(kept.edges())


class BinarySpace(SearchSpace):
    """COMBO's 31-bit cell space on its 3-stage network: (B, C_in, H, W) -> (B, num_classes)."""

    name = "binary"

    def __init__(self, channels: int = 16, stages: int = 3, num_classes: int = 10,
                 input_shape: tuple[int, int, int] = (3, 32, 32)) -> None:
        if channels < 1 or stages < 1 or num_classes < 1:
            raise InputError(f"BinarySpace needs channels, stages, num_classes >= 1, got channels={channels}, "
                             f"stages={stages}, num_classes={num_classes}")
        if len(input_shape) != 3:
            raise InputError(f"input_shape must be (channels, height, width), got {input_shape}")
        self.channels = channels
        self.stages = stages
        self.num_classes = num_classes
        self.input_shape = tuple(int(d) for d in input_shape)
        bit = (0, 1)
        node_vars = [Variable(f"node{k}.{b}", bit) for k in COMPUTE_NODES for b in ("t", "s")]
        edge_vars = [Variable(f"edge{i}->{j}", bit) for i, j in EDGES]
        self.variables = tuple(node_vars + edge_vars)

    def encode(self, arch: Hashable) -> np.ndarray:
        return np.array(check_bits(arch), dtype=np.int64)

    def decode_indices(self, indices: tuple[int, ...]) -> BinaryArch:
        return tuple(int(i) for i in indices)

    def to_graph(self, arch: Hashable) -> ArchGraph:
        """Member -> the network (validated): (C_in, H, W) -> (num_classes,)."""
        bits = check_bits(arch)
        g = ArchGraph("binary " + "".join(map(str, bits)))
        x = g.add("input", "input", shape=list(self.input_shape))
        x = g.add("stem", "conv", [x], block="stem:stem", out=self.channels, kernel=3, order="conv-bn-relu")
        height, width = self.input_shape[1:]
        channels = self.channels
        for stage in range(self.stages):
            if stage > 0:
                x, height, width = _max_pool(g, x, f"stage{stage}.pool", height, width)
                channels *= 2
                x = g.add(f"stage{stage}.expand", "conv", [x], block=f"reduce:stage{stage}", out=channels, kernel=1,
                          order="conv-bn-relu")
            x = _cell(g, x, f"stage{stage}.cell", bits, channels)
        x, _, _ = _max_pool(g, x, "head.pool", height, width)
        x = g.add("head.flatten", "flatten", [x], block="head:head")
        g.add("head.fc", "linear", [x], block="head:head", out=self.num_classes)
        g.validate()
        return g


def _max_pool(g: ArchGraph, x: str, name: str, height: int, width: int) -> tuple[str, int, int]:
    """2x2 stride-2 max pool while both sides are >= 2 (else nothing): returns (node, H', W')."""
    if min(height, width) < 2:
        return x, height, width
    return g.add(name, "pool", [x], block=f"reduce:{name}", kind="max", kernel=2, stride=2), height // 2, width // 2


def _cell(g: ArchGraph, x: str, name: str, bits: BinaryArch, channels: int) -> str:
    """The pruned cell (C -> C, stride 1): (C, H, W) -> (C, H, W)."""
    block = f"binary_cell:{name}"
    types, edges = cell_structure(bits)
    if not edges:
        return g.add(f"{name}.out", "zero", [x], block=block, stride=1)
    outputs = {INPUT: x}
    for k in [*types, OUTPUT]:
        preds = [outputs[i] for i, j in edges if j == k]
        merge = "sum" if len(preds) > 1 else None
        summed = g.add(f"{name}.node{k}" + (".in" if k != OUTPUT else ""), "identity", preds, merge=merge,
                       block=block)
        if k == OUTPUT:
            return summed
        kind = types[k]
        if kind == "identity":
            outputs[k] = summed
        elif kind == "max_pool_3x3":
            outputs[k] = g.add(f"{name}.node{k}", "pool", [summed], block=block, kind="max", kernel=3, stride=1,
                               padding=1)
        else:
            outputs[k] = g.add(f"{name}.node{k}", "conv", [summed], block=block, out=channels,
                               kernel=int(kind[-1]), bias=True, order="conv-bn-relu")
    raise AssertionError("unreachable: the output node is always in a connected cell")
