"""MacroSpace: every encoding decodes to a member whose network validates, compiles and trains;
the encoding contract (bijection, neighbours, mutate, sample, JSON); every block kind reachable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from search_spaces.compiler import GraphModule
from search_spaces.ir import ArchGraph
from search_spaces.spaces.macro import (
    BLOCK_KINDS,
    MacroArch,
    MacroSpace,
    StageChoice,
    attention_heads,
    inception_split,
)

SMALL = MacroSpace(input_shape=(3, 16, 16), num_classes=7, widths=(4, 8), stem_width=8)
DIGITS = MacroSpace(input_shape=(1, 8, 8), num_classes=10)
CIFAR = MacroSpace(input_shape=(3, 32, 32), num_classes=10)


def vectors(space: MacroSpace) -> st.SearchStrategy[np.ndarray]:
    """Uniform-ish vectors over the full product of the variables' ranges."""
    return st.tuples(*[st.integers(0, c - 1) for c in space.cardinalities]).map(
        lambda t: np.array(t, dtype=np.int64))


def tags(g: ArchGraph) -> set[str]:
    return {g.attrs(n)["block"] for n in g.graph.nodes if g.attrs(n)["block"] is not None}


def check_trains(space: MacroSpace, arch: MacroArch, batch: int = 2) -> None:
    """Compile, forward (B, num_classes), backward: finite outputs, a finite gradient on every parameter."""
    model = GraphModule(space.to_graph(arch), seed=0).train()
    x = torch.randn(batch, *space.input_shape, generator=torch.Generator().manual_seed(0))
    y = model(x)
    assert y.shape == (batch, space.num_classes)
    assert torch.isfinite(y).all()
    torch.nn.functional.cross_entropy(y, torch.arange(batch) % space.num_classes).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{arch}: parameter {name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{arch}: non-finite gradient on {name}"


def stage_shapes(space: MacroSpace, arch: MacroArch) -> list[tuple[int, ...]]:
    """Output shape (C, H, W) of each stage: the last node tagged with that stage (or its skip)."""
    g = space.to_graph(arch)
    shapes = g.validate()
    order = g.topological_order()
    out = []
    for s in range(space.num_stages):
        nodes = [n for n in order if (g.attrs(n)["block"] or "").split(":")[-1].split(".")[0] == f"stage{s}"
                 and not g.attrs(n)["block"].startswith("reduce:")]
        out.append(shapes[nodes[-1]].dims)
    return out


# ----------------------------------------------------------------------------- every vector is a valid net
@settings(max_examples=40, deadline=None)
@given(vectors(SMALL))
def test_small_vectors_decode_validate_compile_and_train(vector: np.ndarray) -> None:
    arch = SMALL.decode(vector)
    assert np.array_equal(SMALL.encode(arch), vector)
    check_trains(SMALL, arch)
    widths = [s.width for s in arch.stages]
    assert [d[0] for d in stage_shapes(SMALL, arch)] == widths  # every kind maps to the stage width


@settings(max_examples=10, deadline=None)
@given(vectors(DIGITS))
def test_digits_vectors_compile_and_train(vector: np.ndarray) -> None:
    check_trains(DIGITS, DIGITS.decode(vector))


@settings(max_examples=40, deadline=None)
@given(vectors(CIFAR))
def test_cifar_vectors_validate(vector: np.ndarray) -> None:
    arch = CIFAR.decode(vector)
    g = CIFAR.to_graph(arch)
    shapes = g.validate()
    assert shapes[g.output].dims == (10,)
    assert [s[1:] for s in stage_shapes(CIFAR, arch)] == [(32, 32), (16, 16), (8, 8)]


def test_cifar_extremes_compile_and_train() -> None:
    """The largest members (all width 128, depth 3, kernel 5) of a few kinds still run."""
    for kind in ("attention", "dense", "inception"):
        arch = MacroArch(tuple(StageChoice(kind, 128, 3, 5, s == 1) for s in range(3)))
        check_trains(CIFAR, arch)


def test_tiny_inputs_stop_downsampling_at_one_pixel() -> None:
    space = MacroSpace(input_shape=(1, 3, 2), num_stages=4, widths=(4, 8))
    assert space.reduces == [False, True, False, False]
    assert space.resolutions == [(3, 2), (1, 1), (1, 1), (1, 1)]
    rng = np.random.default_rng(1)
    for kind in BLOCK_KINDS:
        stages = [StageChoice(kind, int(rng.choice(space.widths)), 2, 3, bool(s % 2)) for s in range(4)]
        check_trains(space, MacroArch(tuple(stages)))


# ----------------------------------------------------------------------------- encoding contract
@settings(max_examples=30, deadline=None)
@given(vectors(CIFAR))
def test_encode_decode_round_trip_and_json(vector: np.ndarray) -> None:
    arch = CIFAR.decode(vector)
    assert CIFAR.decode(CIFAR.encode(arch)) == arch
    assert np.array_equal(CIFAR.encode(arch), vector)
    data = json.loads(json.dumps(CIFAR.to_json(arch)))
    assert CIFAR.from_json(data) == arch
    assert hash(arch) == hash(CIFAR.decode(vector.copy()))


@settings(max_examples=30, deadline=None)
@given(vectors(CIFAR), st.integers(0, 2**32 - 1))
def test_neighbours_and_mutate(vector: np.ndarray, seed: int) -> None:
    arch = CIFAR.decode(vector)
    x = CIFAR.encode(arch)
    neighbours = CIFAR.neighbours(arch)
    assert len(neighbours) == sum(len(v.neighbour_indices(int(i))) for v, i in zip(CIFAR.variables, x, strict=True))
    assert len(set(neighbours)) == len(neighbours) and arch not in neighbours
    for nb in neighbours:
        diff = np.flatnonzero(CIFAR.encode(nb) != x)
        assert len(diff) == 1
        var = CIFAR.variables[diff[0]]
        if var.ordinal:
            assert abs(int(CIFAR.encode(nb)[diff[0]]) - int(x[diff[0]])) == 1
    child = CIFAR.mutate(arch, np.random.default_rng(seed))
    assert child in neighbours
    assert CIFAR.decode(CIFAR.encode(child)) == child


def test_sample_is_seed_deterministic() -> None:
    a = [CIFAR.sample(np.random.default_rng(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng1, rng2 = np.random.default_rng(11), np.random.default_rng(11)
    assert [CIFAR.sample(rng1) for _ in range(20)] == [CIFAR.sample(rng2) for _ in range(20)]
    assert len({CIFAR.sample(np.random.default_rng(s)) for s in range(20)}) > 15


def test_variables_and_size() -> None:
    names = [v.name for v in CIFAR.variables]
    assert names[:5] == ["stage0.block", "stage0.width", "stage0.depth", "stage0.kernel", "stage0.skip"]
    assert len(names) == 15
    assert [v.ordinal for v in CIFAR.variables[:5]] == [False, True, True, True, False]
    assert CIFAR.size == (6 * 4 * 3 * 2 * 2) ** 3


def test_rejects_non_members_and_bad_config() -> None:
    arch = CIFAR.sample(np.random.default_rng(0))
    bad = MacroArch((StageChoice("conv", 24, 1, 3, False), *arch.stages[1:]))
    with pytest.raises(ValueError, match=r"stage0\.width"):
        CIFAR.encode(bad)
    with pytest.raises(ValueError, match="3 stages"):
        CIFAR.encode(MacroArch(arch.stages[:2]))
    with pytest.raises(ValueError, match=r"stage1\.depth"):
        CIFAR.decode([0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="odd"):
        MacroSpace(kernels=(3, 4))
    with pytest.raises(ValueError, match="increasing"):
        MacroSpace(widths=(32, 16))
    with pytest.raises(ValueError, match=">= 4"):
        MacroSpace(widths=(2, 8))
    with pytest.raises(ValueError, match="blocks"):
        MacroSpace(blocks=("conv", "mlp"))


def test_str_is_readable() -> None:
    arch = MacroArch((StageChoice("residual", 16, 2, 3, True), StageChoice("attention", 32, 1, 5, False)))
    assert str(arch) == "residual(w16,d2,k3,skip) -> attention(w32,d1,k5)"


# ----------------------------------------------------------------------------- block kinds and mappings
@pytest.mark.parametrize("kind", BLOCK_KINDS)
def test_every_kind_reachable_and_tagged(kind: str) -> None:
    space = MacroSpace(input_shape=(3, 8, 8), num_stages=2, widths=(4, 8), depths=(1, 2), stem_width=4)
    stages = (StageChoice(kind, 8, 2, 5, True), StageChoice(kind, 4, 1, 3, False))
    arch = MacroArch(stages)
    assert arch in {space.decode(v) for v in _kind_vectors(space, kind)}
    g = space.to_graph(arch)
    found = tags(g)
    assert f"{kind}:stage0.0" in found and f"{kind}:stage1.0" in found
    assert (f"{kind}:stage0.1" in found) == (kind != "dense")  # dense: depth = layers of one block
    assert "skip:stage0" in found and "skip:stage1" not in found
    assert {t.split(":")[0] for t in found} <= {kind, "stem", "reduce", "skip", "transition", "head"}
    kernels = {g.params(n)["kernel"] for n in g.graph.nodes if g.op(n) == "conv" and g.params(n)["kernel"] > 1}
    assert 5 in kernels  # stage 0's kernel reaches its main convs (every kind has one)
    check_trains(space, arch)


def _kind_vectors(space: MacroSpace, kind: str) -> list[np.ndarray]:
    k = space.blocks.index(kind)
    return [np.array([k, w, d, kk, sk, k, 0, 0, 0, 0]) for w in (0, 1) for d in (0, 1) for kk in (0, 1)
            for sk in (0, 1)]


def test_block_mappings() -> None:
    assert inception_split(4) == (1, 1, 1, 1)
    assert inception_split(64) == (16, 32, 8, 8)
    assert all(sum(inception_split(w)) == w and min(inception_split(w)) >= 1 for w in range(4, 300))
    assert [attention_heads(w) for w in (4, 8, 16, 32, 64, 128, 24)] == [1, 1, 2, 4, 8, 8, 2]
    space = MacroSpace(input_shape=(3, 8, 8), num_stages=1, widths=(8, 16), stem_width=8)
    g = space.to_graph(MacroArch((StageChoice("attention", 16, 1, 3, False),)))
    assert g.params("stage0.0.attn") == {"heads": 2, "qkv_bias": True, "pos": "learned"}
    g = space.to_graph(MacroArch((StageChoice("dense", 16, 3, 3, False),)))
    assert g.params("stage0.0.layer2.conv2")["out"] == 4  # growth = width / 4
    assert g.validate()["stage0.0.concat"].dims == (8 + 3 * 4, 8, 8)
    g = space.to_graph(MacroArch((StageChoice("highway", 16, 1, 3, False),)))
    assert g.params("stage0.adapt")["kernel"] == 1 and g.params("stage0.adapt")["out"] == 16
    g = space.to_graph(MacroArch((StageChoice("highway", 8, 1, 3, False),)))
    assert "stage0.adapt" not in g.graph  # no adaptation when the width is unchanged
    g = space.to_graph(MacroArch((StageChoice("inception", 16, 1, 5, False),)))
    assert g.params("stage0.0.branch3.1")["kernel"] == 5
