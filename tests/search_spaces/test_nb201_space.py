"""NAS-Bench-201 space: arch strings, benchmark table, encoding contract, network vs. the table."""

from __future__ import annotations

import csv
import functools
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from datapaths import NB201_TABLE
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from search_spaces.analysis import count_params, measure
from search_spaces.compiler import GraphModule
from search_spaces.spaces.nb201 import (
    EDGES,
    NB201_OPS,
    NB201Space,
    arch_from_index,
    arch_to_string,
    index_of,
    parse_arch_string,
)

TABLE = NB201_TABLE
needs_table = pytest.mark.skipif(not TABLE.is_file(), reason="NB201 table not available (set NB201_TABLE)")

# (index, arch, params_m, flops_m) rows of nb201_cifar10.csv, so the key checks run without the table
KNOWN_ROWS = [
    (0, "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
     0.129306, 15.64737),
    (1, "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
     0.802426, 113.95137),
    (6111, "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
     1.073466, 153.27297),
]

members = st.tuples(*[st.sampled_from(NB201_OPS) for _ in EDGES])
vectors = st.lists(st.integers(0, len(NB201_OPS) - 1), min_size=len(EDGES), max_size=len(EDGES))


@functools.cache
def table_rows() -> list[dict[str, str]]:
    with open(TABLE, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- arch strings
@needs_table
def test_every_table_string_round_trips_and_covers_the_space() -> None:
    strings = [row["arch"] for row in table_rows()]
    parsed = [NB201Space.parse(s) for s in strings]
    assert [NB201Space.to_string(a) for a in parsed] == strings
    assert len(set(parsed)) == 15625 == NB201Space().size
    space = NB201Space()
    encoded = {tuple(space.encode(a)) for a in parsed}
    assert len(encoded) == 15625


def test_parse_reads_edges_in_string_order() -> None:
    text = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|skip_connect~1|nor_conv_3x3~2|"
    arch = parse_arch_string(text)
    assert arch == ("avg_pool_3x3", "nor_conv_1x1", "skip_connect", "none", "skip_connect", "nor_conv_3x3")
    assert arch_to_string(arch) == text


@pytest.mark.parametrize(("text", "message"), [
    ("", "3 '\\+'-separated nodes"),
    ("|none~0|+|none~0|none~1|", "3 '\\+'-separated nodes"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|", "3 '\\+'-separated nodes"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must look like"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "must have 2 edge"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|", "must have 3 edge"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must read 'op~0'"),
    ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", "must read 'op~0'"),
    ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", "must read 'op~0'"),
    ("|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown NB201 op 'conv_3x3'"),
])
def test_malformed_strings_raise_value_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NB201Space.parse(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="must be a str"):
        parse_arch_string(("none",) * 6)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the table
@needs_table
def test_arch_from_index_and_reverse_mapping() -> None:
    rows = table_rows()
    for i in (0, 1, 6111, 15624):
        arch = arch_from_index(TABLE, i)
        assert arch_to_string(arch) == rows[i]["arch"]
        assert NB201Space.arch_from_index(str(TABLE), i) == arch
    mapping = index_of(TABLE)
    assert len(mapping) == 15625
    assert mapping[arch_from_index(TABLE, 6111)] == 6111
    assert all(mapping[arch_from_index(TABLE, i)] == i for i in (0, 7, 15624))


@needs_table
def test_table_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(IndexError, match=re.escape("out of range 0..15624")):
        arch_from_index(TABLE, 15625)
    with pytest.raises(IndexError, match="out of range"):
        arch_from_index(TABLE, -1)
    with pytest.raises(TypeError, match="must be an int"):
        arch_from_index(TABLE, "3")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        arch_from_index(tmp_path / "missing.csv", 0)
    bad = tmp_path / "bad.csv"
    bad.write_text("index,genome\n0,abc\n")
    with pytest.raises(ValueError, match="needs 'index' and 'arch' columns"):
        arch_from_index(bad, 0)


# ----------------------------------------------------------------------------- network size
def test_index_0_has_129306_parameters() -> None:
    graph = NB201Space().to_graph(NB201Space.parse(KNOWN_ROWS[0][1]))
    assert count_params(graph) == 129_306


def _check_params_and_flops(arch_string: str, params_m: float, flops_m: float) -> None:
    """params_m equals our count / 1e6 exactly (6 decimals). The table's flops_m follows AutoDL's
    counter: conv and linear multiply-adds plus the classifier's bias adds (no pool/BN/ReLU/sum),
    i.e. torch's MACs + num_classes."""
    cost = measure(NB201Space().to_graph(NB201Space.parse(arch_string)))
    assert f"{cost.params / 1e6:.6f}" == f"{params_m:.6f}"
    assert abs((cost.macs + 10) / 1e6 - flops_m) < 5e-6


@pytest.mark.parametrize(("index", "arch_string", "params_m", "flops_m"), KNOWN_ROWS)
def test_known_rows_params_and_flops(index: int, arch_string: str, params_m: float, flops_m: float) -> None:
    _check_params_and_flops(arch_string, params_m, flops_m)
    if TABLE.is_file():
        row = table_rows()[index]
        assert (row["arch"], float(row["params_m"]), float(row["flops_m"])) == (arch_string, params_m, flops_m)


@needs_table
@pytest.mark.parametrize("index", [2, 3, *random.Random(201).sample(range(15625), 6)])
def test_table_params_and_flops(index: int) -> None:
    row = table_rows()[index]
    _check_params_and_flops(row["arch"], float(row["params_m"]), float(row["flops_m"]))


def test_parameter_count_closed_form() -> None:
    """Count from the op formulas: conv C*C*k*k + BN 2C, reductions, stem, head."""
    C, N = 16, 5
    arch = ("nor_conv_3x3", "nor_conv_1x1", "none", "avg_pool_3x3", "skip_connect", "nor_conv_3x3")
    per_edge = {"none": 0, "skip_connect": 0, "avg_pool_3x3": 0, "nor_conv_1x1": 1, "nor_conv_3x3": 9}
    total = 3 * C * 9 + 2 * C  # stem
    for c in (C, 2 * C, 4 * C):
        total += N * sum(c * c * per_edge[op] + (2 * c if per_edge[op] else 0) for op in arch)
    for c in (C, 2 * C):  # reduction blocks c -> 2c
        total += (c * 2 * c * 9 + 4 * c) + (2 * c * 2 * c * 9 + 4 * c) + c * 2 * c
    total += 2 * 4 * C + 4 * C * 10 + 10  # last BN, classifier
    assert count_params(NB201Space(C=C, N=N).to_graph(arch)) == total


# ----------------------------------------------------------------------------- encoding contract
def test_variables() -> None:
    space = NB201Space()
    assert [v.name for v in space.variables] == ["edge1<-0", "edge2<-0", "edge2<-1", "edge3<-0", "edge3<-1",
                                                 "edge3<-2"]
    assert all(v.choices == NB201_OPS and not v.ordinal for v in space.variables)
    assert NB201_OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


@settings(max_examples=60, deadline=None)
@given(vectors)
def test_decode_encode_bijection(vector: list[int]) -> None:
    space = NB201Space()
    arch = space.decode(vector)
    assert isinstance(arch, tuple) and hash(arch) is not None
    assert space.encode(arch).tolist() == vector
    assert space.encode(arch).dtype == np.int64
    assert space.from_json(space.to_json(arch)) == arch


@settings(max_examples=30, deadline=None)
@given(members, st.integers(0, 2**32 - 1))
def test_neighbours_and_mutate(arch: tuple[str, ...], seed: int) -> None:
    space = NB201Space()
    neighbours = space.neighbours(arch)
    assert len(neighbours) == 24 == len(set(neighbours))
    assert arch not in neighbours
    for other in neighbours:
        assert sum(a != b for a, b in zip(arch, other, strict=True)) == 1
    rng = np.random.default_rng(seed)
    assert space.mutate(arch, rng) in neighbours
    sample = space.sample(rng)
    assert space.decode(space.encode(sample)) == sample


def test_invalid_members_and_vectors_are_rejected() -> None:
    space = NB201Space()
    with pytest.raises(ValueError, match=re.escape("must be in 0..4")):
        space.decode([0, 0, 0, 0, 0, 5])
    with pytest.raises(ValueError, match="6 entries"):
        space.decode([0] * 5)
    with pytest.raises(ValueError, match="6 ops"):
        space.encode(("none",) * 5)
    with pytest.raises(ValueError, match="edge 3<-2 has unknown op 'conv'"):
        space.encode(("none",) * 5 + ("conv",))
    with pytest.raises(ValueError, match="tuple of 6 op names"):
        space.to_graph("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")


# ----------------------------------------------------------------------------- graphs
def test_graph_structure_and_block_tags() -> None:
    arch = ("none", "skip_connect", "none", "nor_conv_3x3", "avg_pool_3x3", "nor_conv_1x1")
    g = NB201Space(C=8, N=2).to_graph(arch)
    blocks = {g.attrs(n)["block"] for n in g.graph}
    assert {"stem:stem", "nb201_cell:stage1.cell0", "nb201_cell:stage3.cell1", "residual:reduce1",
            "residual:reduce2", "head:head"} <= blocks
    assert sum(g.op(n) == "zero" for n in g.graph) == 2 * 3 * 2  # 'none' edges are kept
    node3 = "stage2.cell1.node3"
    assert g.attrs(node3)["merge"] == "sum" and len(g.inputs_of(node3)) == 3
    shapes = g.validate()
    assert shapes["reduce2.add"].dims == (32, 8, 8)
    assert shapes[g.output].dims == (10,)


def _reference_network(arch: tuple[str, ...], C: int, N: int, num_classes: int) -> nn.Module:
    """Independent transcription of AutoDL-Projects TinyNetwork + InferCell + ResNetBasicblock."""

    def relu_conv_bn(c_in: int, c_out: int, k: int, s: int) -> nn.Module:
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, k, s, (k - 1) // 2, bias=False), nn.BatchNorm2d(c_out))

    class Zero(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mul(0.0)

    def edge(op: str, c: int) -> nn.Module:
        return {"none": Zero, "skip_connect": nn.Identity, "nor_conv_1x1": lambda: relu_conv_bn(c, c, 1, 1),
                "nor_conv_3x3": lambda: relu_conv_bn(c, c, 3, 1),
                "avg_pool_3x3": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False)}[op]()

    class Cell(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.ops = nn.ModuleList(edge(op, c) for op in arch)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            nodes = [x]
            for j in (1, 2, 3):
                nodes.append(sum(self.ops[k](nodes[i]) for k, (to, i) in enumerate(EDGES) if to == j))
            return nodes[3]

    class Reduction(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv_a, self.conv_b = relu_conv_bn(c, 2 * c, 3, 2), relu_conv_bn(2 * c, 2 * c, 3, 1)
            self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c, 2 * c, 1, bias=False))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.downsample(x) + self.conv_b(self.conv_a(x))

    layers: list[nn.Module] = [nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C)]
    c = C
    for stage in range(3):
        if stage:
            layers.append(Reduction(c))
            c *= 2
        layers += [Cell(c) for _ in range(N)]
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


@settings(max_examples=12, deadline=None)
@given(members)
def test_network_matches_reference_implementation(arch: tuple[str, ...]) -> None:
    space = NB201Space(C=4, N=1, num_classes=5, input_shape=(3, 16, 16))
    ours = GraphModule(space.to_graph(arch), seed=1).eval()
    ref = _reference_network(arch, 4, 1, 5).eval()
    ours_p, ref_p = list(ours.parameters()), list(ref.parameters())
    assert [p.shape for p in ours_p] == [p.shape for p in ref_p]
    with torch.no_grad():
        for mine, theirs in zip(ours_p, ref_p, strict=True):
            theirs.copy_(mine)
        x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(members)
def test_random_members_compile_and_train(arch: tuple[str, ...]) -> None:
    space = NB201Space(C=4, N=1, num_classes=7, input_shape=(3, 16, 16))
    model = GraphModule(space.to_graph(arch), seed=0).train()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    out = model(x)
    assert out.shape == (3, 7)
    out.square().mean().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
