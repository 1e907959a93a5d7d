"""DARTS space: genotype canonical form, encoding contract, evaluation network vs. quark0/darts."""

from __future__ import annotations

import re
from collections import namedtuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from search_spaces.analysis import count_params
from search_spaces.compiler import GraphModule
from search_spaces.spaces.darts import (
    DARTS,
    DARTS_V1,
    DARTS_V2,
    OPS,
    PRIMITIVES,
    DartsSpace,
    Genotype,
    check_genotype,
)

CARDS = [1, 7, 7, 3, 7, 7, 6, 7, 7, 10, 7, 7] * 2
vectors = st.tuples(*[st.integers(0, c - 1) for c in CARDS]).map(list)
DartsTuple = namedtuple("DartsTuple", "normal normal_concat reduce reduce_concat")  # quark0/darts' Genotype

# DARTS_V2 exactly as written in quark0/darts cnn/genotypes.py
V2_PAPER = DartsTuple(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=range(2, 6),
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=range(2, 6),
)


def small_space(**kw: object) -> DartsSpace:
    return DartsSpace(C=4, layers=3, num_classes=5, input_shape=(3, 16, 16), **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- genotypes
def test_genotype_is_canonical_and_hashable() -> None:
    g = Genotype(*V2_PAPER)
    assert g == DARTS_V2 == DARTS and hash(g) == hash(DARTS_V2)
    # node 2 of the paper's normal cell lists (sep_conv_3x3, 1), (skip_connect, 0): stored by input index
    assert DARTS_V2.normal[4:6] == (("skip_connect", 0), ("sep_conv_3x3", 1))
    assert DARTS_V2.normal_concat == (2, 3, 4, 5) == DARTS_V2.reduce_concat
    for genotype in (DARTS_V1, DARTS_V2):
        for cell in (genotype.normal, genotype.reduce):
            assert all(cell[2 * k][1] < cell[2 * k + 1][1] for k in range(4))
            assert "none" not in {op for op, _ in cell}
    swapped = Genotype(DARTS_V1.normal[1::-1] + DARTS_V1.normal[2:], DARTS_V1.normal_concat, DARTS_V1.reduce,
                       DARTS_V1.reduce_concat)
    assert swapped == DARTS_V1


def test_genotype_rejects_malformed_fields() -> None:
    with pytest.raises(ValueError, match="2 \\(op, input\\) pairs per node"):
        Genotype([("skip_connect", 0)], [2], [], [])
    with pytest.raises(ValueError, match="sequence of \\(op, input\\) pairs"):
        Genotype([("skip_connect", "x"), ("skip_connect", 1)], [2], [], [])
    with pytest.raises(ValueError, match="sequence of node indices"):
        Genotype([], None, [], [])  # type: ignore[arg-type]


def _replace(genotype: Genotype, k: int, pair: tuple[str, int]) -> Genotype:
    normal = list(genotype.normal)
    normal[k] = pair
    return Genotype(normal, genotype.normal_concat, genotype.reduce, genotype.reduce_concat)


@pytest.mark.parametrize(("arch", "message"), [
    (_replace(DARTS_V2, 0, ("none", 0)), "op 'none' is not one of"),
    (_replace(DARTS_V2, 0, ("sep_conv_7x7", 0)), "op 'sep_conv_7x7'"),
    (_replace(DARTS_V2, 0, ("skip_connect", 1)), "both pairs read input 1"),
    (_replace(DARTS_V2, 3, ("skip_connect", 3)), "input 3 must be in 0..2"),
    (Genotype(DARTS_V2.normal, [2, 3, 4], DARTS_V2.reduce, [2, 3, 4, 5]), "normal_concat must be"),
    (Genotype(DARTS_V2.normal[:6], [2, 3, 4, 5], DARTS_V2.reduce, [2, 3, 4, 5]), "4 nodes"),
    (V2_PAPER, "must be a Genotype"),
])
def test_non_members_are_rejected(arch: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_genotype(arch)
    with pytest.raises(ValueError, match=message):
        small_space().encode(arch)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- encoding contract
def test_variables() -> None:
    space = DartsSpace()
    assert PRIMITIVES == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                          "dil_conv_3x3", "dil_conv_5x5")
    assert OPS == PRIMITIVES[1:]
    assert space.cardinalities == CARDS
    assert space.variables[9].name == "normal.node3.inputs"
    assert space.variables[9].choices == ("0,1", "0,2", "0,3", "0,4", "1,2", "1,3", "1,4", "2,3", "2,4", "3,4")
    assert space.variables[3].choices == ("0,1", "0,2", "1,2")
    assert space.size == (1 * 3 * 6 * 10) ** 2 * 7**16


def test_published_genotypes_round_trip() -> None:
    space = DartsSpace()
    for genotype in (DARTS_V1, DARTS_V2):
        assert space.decode(space.encode(genotype)) == genotype
        assert space.from_json(space.to_json(genotype)) == genotype
    # V2 normal nodes read inputs (0,1), (0,1), (0,1), (0,2): pair indices 0, 0, 0, 1 (module docstring order)
    x = space.encode(DARTS_V2)
    sep3, skip, dil3, maxp = (OPS.index(o) for o in ("sep_conv_3x3", "skip_connect", "dil_conv_3x3", "max_pool_3x3"))
    assert x[:12].tolist() == [0, sep3, sep3, 0, sep3, sep3, 0, skip, sep3, 1, skip, dil3]
    assert x[12:15].tolist() == [0, maxp, maxp]


@settings(max_examples=80, deadline=None)
@given(vectors)
def test_decode_encode_bijection(vector: list[int]) -> None:
    space = small_space()
    genotype = space.decode(vector)
    assert isinstance(genotype, Genotype) and hash(genotype) is not None
    check_genotype(genotype)
    assert space.encode(genotype).tolist() == vector
    assert space.decode(space.encode(genotype)) == genotype


@settings(max_examples=20, deadline=None)
@given(vectors, st.integers(0, 2**32 - 1))
def test_neighbours_mutate_sample(vector: list[int], seed: int) -> None:
    space = small_space()
    genotype = space.decode(vector)
    neighbours = space.neighbours(genotype)
    assert len(neighbours) == sum(c - 1 for c in CARDS) == 128 == len(set(neighbours))
    for other in neighbours:
        assert int(np.sum(space.encode(other) != space.encode(genotype))) == 1
    rng = np.random.default_rng(seed)
    assert space.mutate(genotype, rng) in neighbours
    check_genotype(space.sample(rng))


def test_decode_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match=re.escape("'normal.node0.inputs' must be in 0..0")):
        small_space().decode([1] + [0] * 23)


# ----------------------------------------------------------------------------- network size
def closed_form_params(genotype: Genotype, C: int, layers: int, num_classes: int) -> int:
    """Parameters of quark0/darts NetworkCIFAR (no aux head) from the op formulas (affine BN = 2c):
    stem 27*3C + 6C; per cell, preprocess0 (ReLUConvBN 1x1 or FactorizedReduce: both c_pp*c + 2c),
    preprocess1 c_p*c + 2c, sep_conv_k 2(k^2 c + c^2 + 2c), dil_conv_k k^2 c + c^2 + 2c, stride-2
    skip (FactorizedReduce) c^2 + 2c, pools and identity 0; classifier c_last*classes + classes."""
    total = 27 * 3 * C + 6 * C
    c_pp = c_p = 3 * C
    c = C
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c = 2 * c if reduction else c
        total += c_pp * c + 2 * c + c_p * c + 2 * c
        for op, src in genotype.reduce if reduction else genotype.normal:
            if op.startswith("sep_conv"):
                k = int(op[-1])
                total += 2 * (k * k * c + c * c + 2 * c)
            elif op.startswith("dil_conv"):
                k = int(op[-1])
                total += k * k * c + c * c + 2 * c
            elif op == "skip_connect" and reduction and src < 2:
                total += c * c + 2 * c
        c_pp, c_p = c_p, 4 * c
    return total + c_p * num_classes + num_classes


def test_darts_v2_eval_network_has_3349342_parameters() -> None:
    """The spec's 3.349 M (excluding the aux head). 3,349,342 was obtained three ways that agree: the
    closed form above, this graph's count, and (offline) a line-by-line transcription of quark0/darts
    cnn/model.py + operations.py with auxiliary=False, which also matched the graph's FLOPs and outputs."""
    assert closed_form_params(DARTS_V2, 36, 20, 10) == 3_349_342
    assert count_params(DartsSpace().to_graph(DARTS_V2)) == 3_349_342
    assert closed_form_params(DARTS_V1, 36, 20, 10) == 3_169_414


@settings(max_examples=10, deadline=None)
@given(vectors, st.sampled_from([(4, 3), (6, 5), (2, 1)]))
def test_param_count_matches_closed_form(vector: list[int], size: tuple[int, int]) -> None:
    C, layers = size
    space = DartsSpace(C=C, layers=layers, num_classes=3, input_shape=(3, 16, 16))
    genotype = space.decode(vector)
    assert count_params(space.to_graph(genotype)) == closed_form_params(genotype, C, layers, 3)


def test_reduction_cells_and_shapes() -> None:
    g = DartsSpace().to_graph(DARTS_V2)
    blocks = {g.attrs(n)["block"] or "" for n in g.graph}
    reduce_cells = sorted(int(b.split(":cell")[1]) for b in blocks if b.startswith("darts_reduce_cell:"))
    assert reduce_cells == [6, 13]
    assert g.op("cell7.preprocess0") == "factorized_reduce" and g.op("cell8.preprocess0") == "conv"
    shapes = g.validate()
    assert shapes["stem"].dims == (108, 32, 32)
    assert shapes["cell5.concat"].dims == (144, 32, 32)
    assert shapes["cell6.concat"].dims == (288, 16, 16)
    assert shapes["cell19.concat"].dims == (576, 8, 8)
    assert shapes[g.output].dims == (10,)
    assert g.attrs("cell6.concat")["merge"] == "concat" and len(g.inputs_of("cell6.concat")) == 4


# ----------------------------------------------------------------------------- against quark0/darts
def _reference_network(genotype: Genotype, C: int, layers: int, num_classes: int) -> nn.Module:
    """Independent transcription of quark0/darts cnn/model.py NetworkCIFAR (auxiliary=False, eval)."""

    def relu_conv_bn(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    class FactorizedReduce(nn.Module):
        def __init__(self, c_in: int, c_out: int) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
            self.c2 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
            self.bn = nn.BatchNorm2d(c_out)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(x)
            return self.bn(torch.cat([self.c1(x), self.c2(x[:, :, 1:, 1:])], dim=1))

    def dw_pw(c: int, k: int, s: int, p: int, d: int) -> list[nn.Module]:
        return [nn.ReLU(), nn.Conv2d(c, c, k, s, p, d, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False),
                nn.BatchNorm2d(c)]

    ops = {
        "avg_pool_3x3": lambda c, s: nn.AvgPool2d(3, s, 1, count_include_pad=False),
        "max_pool_3x3": lambda c, s: nn.MaxPool2d(3, s, 1),
        "skip_connect": lambda c, s: nn.Identity() if s == 1 else FactorizedReduce(c, c),
        "sep_conv_3x3": lambda c, s: nn.Sequential(*dw_pw(c, 3, s, 1, 1), *dw_pw(c, 3, 1, 1, 1)),
        "sep_conv_5x5": lambda c, s: nn.Sequential(*dw_pw(c, 5, s, 2, 1), *dw_pw(c, 5, 1, 2, 1)),
        "dil_conv_3x3": lambda c, s: nn.Sequential(*dw_pw(c, 3, s, 2, 2)),
        "dil_conv_5x5": lambda c, s: nn.Sequential(*dw_pw(c, 5, s, 4, 2)),
    }

    class Cell(nn.Module):
        def __init__(self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool) -> None:
            super().__init__()
            self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else relu_conv_bn(c_pp, c)
            self.pre1 = relu_conv_bn(c_p, c)
            self.pairs = genotype.reduce if reduction else genotype.normal
            self.ops = nn.ModuleList(ops[op](c, 2 if reduction and src < 2 else 1) for op, src in self.pairs)

        def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
            states = [self.pre0(s0), self.pre1(s1)]
            for i in range(4):
                (_, a), (_, b) = self.pairs[2 * i], self.pairs[2 * i + 1]
                states.append(self.ops[2 * i](states[a]) + self.ops[2 * i + 1](states[b]))
            return torch.cat(states[2:], dim=1)

    class Network(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 3 * C, 3, padding=1, bias=False), nn.BatchNorm2d(3 * C))
            c_pp = c_p = 3 * C
            c, reduction_prev = C, False
            self.cells = nn.ModuleList()
            for i in range(layers):
                reduction = i in (layers // 3, 2 * layers // 3)
                c = 2 * c if reduction else c
                self.cells.append(Cell(c_pp, c_p, c, reduction, reduction_prev))
                reduction_prev = reduction
                c_pp, c_p = c_p, 4 * c
            self.classifier = nn.Linear(c_p, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s0 = s1 = self.stem(x)
            for cell in self.cells:
                s0, s1 = s1, cell(s0, s1)
            return self.classifier(s1.mean(dim=(2, 3)))

    return Network()


@settings(max_examples=6, deadline=None)
@given(vectors)
def test_network_matches_reference_implementation(vector: list[int]) -> None:
    space = small_space()
    genotype = space.decode(vector)
    ours = GraphModule(space.to_graph(genotype), seed=3).eval()
    ref = _reference_network(genotype, 4, 3, 5).eval()
    ours_p, ref_p = list(ours.parameters()), list(ref.parameters())
    assert [p.shape for p in ours_p] == [p.shape for p in ref_p]
    with torch.no_grad():
        for mine, theirs in zip(ours_p, ref_p, strict=True):
            theirs.copy_(mine)
        x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


@settings(max_examples=12, deadline=None)
@given(vectors)
def test_random_members_compile_and_train(vector: list[int]) -> None:
    space = small_space()
    model = GraphModule(space.to_graph(space.decode(vector)), seed=0).train()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    out = model(x)
    assert out.shape == (3, 5)
    out.square().mean().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
