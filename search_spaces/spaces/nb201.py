"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020), on the benchmark's own macro skeleton.

A member is a plain tuple of 6 op names, one per cell edge in the arch-string order
``|a~0|+|b~0|c~1|+|d~0|e~1|f~2|``, i.e. edges (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).
Node 0 is the cell input, node j = sum of its in-edges, node 3 is the cell output.

Ops (all C -> C, stride 1, affine BN, no conv bias; as in AutoDL-Projects ``cell_operations.py``):

* ``none``          zeros of the input's shape
* ``skip_connect``  identity
* ``nor_conv_1x1``  ReLU -> Conv1x1 -> BN
* ``nor_conv_3x3``  ReLU -> Conv3x3 (pad 1) -> BN
* ``avg_pool_3x3``  AvgPool2d(3, stride 1, padding 1, count_include_pad=False)

The network (AutoDL-Projects ``TinyNetwork``, C=16, N=5 at CIFAR size): stem Conv3x3(3->C)+BN;
N cells at C; a ResNet basic reduction block to 2C; N cells at 2C; a reduction block to 4C;
N cells at 4C; BN + ReLU; global average pool; linear. Index 0 of the benchmark has 129,306
parameters in this network, which the tests check against the table.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Hashable
from pathlib import Path

import numpy as np

from search_spaces.blocks import classifier_head
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.spaces.base import SearchSpace, Variable

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""The 5 edge ops, in the index order of the encoding."""

EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
"""(to, from) node pairs of the 6 edges, in member / arch-string order."""

NB201Arch = tuple[str, str, str, str, str, str]


# --------------------------------------------------------------------------- arch strings
def parse_arch_string(text: str) -> NB201Arch:
    """``|a~0|+|b~0|c~1|+|d~0|e~1|f~2|`` -> ``(a, b, c, d, e, f)``; ValueError if malformed."""
    if not isinstance(text, str):
        raise InputError(f"NB201 arch string must be a str, got {type(text).__name__}")
    nodes = text.strip().split("+")
    if len(nodes) != 3:
        raise InputError(f"NB201 arch string must have 3 '+'-separated nodes, got {len(nodes)} in {text!r}")
    ops: list[str] = []
    for j, node in enumerate(nodes, start=1):
        if len(node) < 2 or not (node.startswith("|") and node.endswith("|")):
            raise InputError(f"node {j} of NB201 arch string {text!r} must look like '|op~i|...|', got {node!r}")
        entries = node[1:-1].split("|")
        if len(entries) != j:
            raise InputError(f"node {j} of NB201 arch string {text!r} must have {j} edge(s), got {len(entries)}")
        for i, entry in enumerate(entries):
            op, sep, src = entry.partition("~")
            if not sep or src != str(i):
                raise InputError(f"edge {entry!r} of node {j} in {text!r} must read 'op~{i}'")
            if op not in NB201_OPS:
                raise InputError(f"unknown NB201 op {op!r} in {text!r}; ops are {NB201_OPS}")
            ops.append(op)
    return tuple(ops)  # type: ignore[return-value]


def arch_to_string(arch: NB201Arch) -> str:
    """``(a, b, c, d, e, f)`` -> ``|a~0|+|b~0|c~1|+|d~0|e~1|f~2|``."""
    arch = check_arch(arch)
    parts = []
    for j in (1, 2, 3):
        entries = [f"{arch[k]}~{i}" for k, (to, i) in enumerate(EDGES) if to == j]
        parts.append("|" + "|".join(entries) + "|")
    return "+".join(parts)


def check_arch(arch: object) -> NB201Arch:
    """Return ``arch`` as a member tuple, or raise ValueError saying what is wrong."""
    if isinstance(arch, str) or not isinstance(arch, (tuple, list)):
        raise InputError(f"NB201 member must be a tuple of 6 op names, got {arch!r}")
    if len(arch) != len(EDGES):
        raise InputError(f"NB201 member must have 6 ops (one per edge), got {len(arch)}: {arch!r}")
    for k, op in enumerate(arch):
        if op not in NB201_OPS:
            to, src = EDGES[k]
            raise InputError(f"edge {to}<-{src} has unknown op {op!r}; ops are {NB201_OPS}")
    return tuple(arch)  # type: ignore[return-value]


# --------------------------------------------------------------------------- benchmark table
@functools.lru_cache(maxsize=4)
def _arch_column(path: str, mtime_ns: int) -> tuple[str, ...]:
    """The table's ``arch`` column in index order (cached per file path and modification time)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "arch" not in reader.fieldnames or "index" not in reader.fieldnames:
            raise InputError(f"{path}: not an NB201 table (needs 'index' and 'arch' columns, "
                             f"found {reader.fieldnames})")
        archs = []
        for row_number, row in enumerate(reader):
            if int(row["index"]) != row_number:
                raise InputError(f"{path}: row {row_number} has index {row['index']}; rows must be in index order")
            archs.append(row["arch"])
    return tuple(archs)


def _table(table_path: str | os.PathLike[str]) -> tuple[str, ...]:
    path = Path(table_path)
    if not path.is_file():
        raise FileNotFoundError(f"NB201 table {str(path)!r} does not exist or is not a file")
    return _arch_column(str(path.resolve()), path.stat().st_mtime_ns)


def arch_from_index(table_path: str | os.PathLike[str], index: int) -> NB201Arch:
    """Member for benchmark ``index`` read from the table's ``arch`` column (e.g. nb201_cifar10.csv)."""
    archs = _table(table_path)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"NB201 index must be an int, got {type(index).__name__}")
    if not 0 <= index < len(archs):
        raise IndexError(f"NB201 index {index} out of range 0..{len(archs) - 1} for table {str(table_path)!r}")
    return parse_arch_string(archs[int(index)])


@functools.lru_cache(maxsize=4)
def _index_map(path: str, mtime_ns: int) -> dict[NB201Arch, int]:
    return {parse_arch_string(s): i for i, s in enumerate(_arch_column(path, mtime_ns))}


def index_of(table_path: str | os.PathLike[str]) -> dict[NB201Arch, int]:
    """Reverse mapping member -> benchmark index for the table at ``table_path`` (a fresh dict)."""
    _table(table_path)
    path = Path(table_path)
    return dict(_index_map(str(path.resolve()), path.stat().st_mtime_ns))


# --------------------------------------------------------------------------- the space
class NB201Space(SearchSpace):
    """NAS-Bench-201: 6 categorical edge variables over 5 ops (15,625 members, 24 neighbours each).

    ``to_graph`` builds the benchmark network for input (3, H, W) (H, W divisible by 4) and
    ``num_classes`` outputs: (B, 3, H, W) -> (B, num_classes).
    """

    name = "nb201"
    parse = staticmethod(parse_arch_string)
    to_string = staticmethod(arch_to_string)
    arch_from_index = staticmethod(arch_from_index)
    index_of = staticmethod(index_of)

    def __init__(self, C: int = 16, N: int = 5, num_classes: int = 10,
                 input_shape: tuple[int, int, int] = (3, 32, 32)) -> None:
        if C < 1 or N < 1 or num_classes < 1:
            raise InputError(f"NB201Space needs C, N, num_classes >= 1, got C={C}, N={N}, num_classes={num_classes}")
        if len(input_shape) != 3:
            raise InputError(f"input_shape must be (channels, height, width), got {input_shape}")
        self.C = C
        self.N = N
        self.num_classes = num_classes
        self.input_shape = tuple(int(d) for d in input_shape)
        self.variables = tuple(Variable(f"edge{to}<-{src}", NB201_OPS) for to, src in EDGES)

    def encode(self, arch: Hashable) -> np.ndarray:
        """Member -> int64 vector of 6 op indices into :data:`NB201_OPS`."""
        return np.array([NB201_OPS.index(op) for op in check_arch(arch)], dtype=np.int64)

    def decode_indices(self, indices: tuple[int, ...]) -> NB201Arch:
        return tuple(NB201_OPS[i] for i in indices)  # type: ignore[return-value]

    # ----------------------------------------------------------------------- network
    def to_graph(self, arch: Hashable) -> ArchGraph:
        """Member -> the benchmark network (validated): (3, H, W) -> (num_classes,)."""
        arch = check_arch(arch)
        C, N = self.C, self.N
        g = ArchGraph(f"nb201 {arch_to_string(arch)}")
        x = g.add("input", "input", shape=list(self.input_shape))
        x = g.add("stem", "conv", [x], block="stem:stem", out=C, kernel=3, order="conv-bn")
        channels = C
        for stage in (1, 2, 3):
            if stage > 1:
                x = _reduction_block(g, x, f"reduce{stage - 1}", channels * 2)
                channels *= 2
            for k in range(N):
                x = _cell(g, x, f"stage{stage}.cell{k}", arch, channels)
        x = g.add("lastact.bn", "norm", [x], block="head:head")
        x = g.add("lastact.relu", "act", [x], block="head:head", fn="relu")
        classifier_head(g, x, self.num_classes)
        g.validate()
        return g


def _edge_op(g: ArchGraph, x: str, node: str, op: str, channels: int, block: str) -> str:
    """One cell edge: (C, H, W) -> (C, H, W)."""
    if op == "none":
        return g.add(node, "zero", [x], block=block, stride=1)
    if op == "skip_connect":
        return g.add(node, "identity", [x], block=block)
    if op in ("nor_conv_1x1", "nor_conv_3x3"):
        kernel = 1 if op == "nor_conv_1x1" else 3
        return g.add(node, "conv", [x], block=block, out=channels, kernel=kernel, order="relu-conv-bn")
    if op == "avg_pool_3x3":
        return g.add(node, "pool", [x], block=block, kind="avg", kernel=3, stride=1, padding=1,
                     count_include_pad=False)
    raise InputError(f"unknown NB201 op {op!r}")


def _cell(g: ArchGraph, x: str, name: str, arch: NB201Arch, channels: int) -> str:
    """NB201 cell (AutoDL ``InferCell``, C -> C, stride 1): (C, H, W) -> (C, H, W)."""
    block = f"nb201_cell:{name}"
    nodes = [x]
    for j in (1, 2, 3):
        incoming = [_edge_op(g, nodes[src], f"{name}.edge{j}<-{src}", arch[k], channels, block)
                    for k, (to, src) in enumerate(EDGES) if to == j]
        merge = "sum" if len(incoming) > 1 else None
        nodes.append(g.add(f"{name}.node{j}", "identity", incoming, merge=merge, block=block))
    return nodes[3]


def _reduction_block(g: ArchGraph, x: str, name: str, out: int) -> str:
    """AutoDL ``ResNetBasicblock(C, 2C, stride 2)``: (C, H, W) -> (2C, H/2, W/2).

    conv_a (ReLU-Conv3x3 s2-BN) -> conv_b (ReLU-Conv3x3-BN), plus the shortcut AvgPool2d(2, 2) ->
    Conv1x1 (no bias, no BN); output = sum, with no activation after it.
    """
    block = f"residual:{name}"
    h = g.add(f"{name}.conv_a", "conv", [x], block=block, out=out, kernel=3, stride=2, order="relu-conv-bn")
    h = g.add(f"{name}.conv_b", "conv", [h], block=block, out=out, kernel=3, order="relu-conv-bn")
    s = g.add(f"{name}.downsample.pool", "pool", [x], block=block, kind="avg", kernel=2, stride=2)
    s = g.add(f"{name}.downsample.conv", "conv", [s], block=block, out=out, kernel=1, order="conv")
    return g.add(f"{name}.add", "identity", [h, s], merge="sum", block=block)
