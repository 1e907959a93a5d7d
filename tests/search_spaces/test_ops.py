"""Every op, merge and conv order: forward/backward on CPU, gradients everywhere, shapes = inference."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from search_spaces.compiler import compile_graph
from search_spaces.errors import ArchGraphError
from search_spaces.ir import ArchGraph
from search_spaces.layers import build_op, sinusoidal_encoding
from search_spaces.ops import ACTIVATIONS, CONV_ORDERS, OPS, POSITIONAL, Shape, infer_shape, resolve_params

MAP = (4, 7, 7)
EVEN_MAP = (4, 8, 8)
TOKENS = (5, 6)
VEC = (6,)

# (op, params, input shape, expected output shape (None: same as the input))
CASES: list[tuple[str, dict[str, Any], tuple[int, ...], tuple[int, ...] | None]] = [
    *[("conv", {"out": 6, "order": order}, MAP, (6, 7, 7)) for order in CONV_ORDERS],
    ("conv", {"out": 8, "kernel": 3, "stride": 2, "groups": 2, "bias": True}, MAP, (8, 4, 4)),
    ("conv", {"out": 4, "kernel": 3, "dilation": 2}, MAP, (4, 7, 7)),
    ("conv", {"out": 4, "kernel": 3, "dilation": 2, "padding": 0}, MAP, (4, 3, 3)),
    ("conv", {"out": 4, "kernel": 2, "padding": 1, "stride": 3, "act": "gelu"}, MAP, (4, 3, 3)),
    ("conv", {"out": 4, "kernel": 2}, MAP, (4, 6, 6)),  # even kernel, 'same' padding 0
    ("conv", {"out": 4, "kernel": 1, "groups": 4, "order": "bn-relu-conv", "act": "silu"}, MAP, (4, 7, 7)),
    ("sep_conv", {"out": 6}, MAP, (6, 7, 7)),
    ("sep_conv", {"out": 6, "kernel": 5, "stride": 2}, MAP, (6, 4, 4)),
    ("sep_conv", {"out": 6, "kernel": 3, "dilation": 2, "repeats": 1}, MAP, (6, 7, 7)),
    ("sep_conv", {"out": 6, "kernel": 2, "repeats": 2}, MAP, (6, 5, 5)),  # even kernel: each unit shrinks
    ("sep_conv", {"out": 6, "kernel": 2, "repeats": 1, "dilation": 2}, MAP, (6, 5, 5)),
    ("factorized_reduce", {"out": 6}, EVEN_MAP, (6, 4, 4)),
    ("pool", {"kind": "max", "kernel": 3, "stride": 2, "padding": 1}, MAP, (4, 4, 4)),
    ("pool", {"kind": "avg", "kernel": 3, "stride": 1, "padding": 1, "count_include_pad": False}, MAP, (4, 7, 7)),
    ("pool", {"kind": "max", "kernel": 2}, MAP, (4, 3, 3)),  # stride 0 = kernel
    ("pool", {"kind": "max", "kernel": 2, "ceil_mode": True}, MAP, (4, 4, 4)),
    ("pool", {"kind": "avg", "kernel": 3, "stride": 2, "ceil_mode": True}, (4, 6, 6), (4, 3, 3)),
    ("pool", {"kind": "max", "kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (4, 5, 5), (4, 3, 3)),
    ("adaptive_pool", {"kind": "avg", "size": 3}, MAP, (4, 3, 3)),
    ("adaptive_pool", {"kind": "max", "size": 1}, MAP, (4, 1, 1)),
    ("adaptive_pool", {"kind": "avg", "size": 9}, MAP, (4, 9, 9)),  # larger than the input
    ("global_pool", {"kind": "avg"}, MAP, (4,)),
    ("global_pool", {"kind": "max"}, MAP, (4,)),
    ("flatten", {}, MAP, (196,)),
    ("flatten", {}, TOKENS, (30,)),
    ("linear", {"out": 3}, VEC, (3,)),
    ("linear", {"out": 3, "bias": False}, TOKENS, (5, 3)),
    ("norm", {"kind": "batch"}, MAP, None),
    ("norm", {"kind": "batch", "eps": 1e-3}, VEC, None),
    ("norm", {"kind": "layer"}, TOKENS, None),
    ("norm", {"kind": "layer"}, VEC, None),
    *[("act", {"fn": fn}, MAP, None) for fn in ACTIVATIONS],
    ("act", {"fn": "gelu"}, TOKENS, None),
    ("dropout", {"p": 0.5}, MAP, None),
    ("dropout", {"p": 0.1}, TOKENS, None),
    ("dropout", {"p": 0.0}, VEC, None),
    ("identity", {}, MAP, None),
    ("identity", {}, VEC, None),
    ("zero", {}, MAP, None),
    ("zero", {}, TOKENS, None),
    ("zero", {}, VEC, None),
    ("zero", {"stride": 2}, MAP, (4, 4, 4)),
    ("zero", {"stride": 3}, (4, 8, 6), (4, 3, 2)),
    *[("mhsa", {"heads": 2, "pos": pos}, TOKENS, None) for pos in POSITIONAL],
    *[("mhsa", {"heads": 4, "pos": pos, "qkv_bias": False}, MAP, None) for pos in POSITIONAL],
    ("mhsa", {"heads": 3}, (6, 3, 4), None),  # non-square map
    *[("to_tokens", {"cls_token": True, "pos": pos}, MAP, (50, 4)) for pos in POSITIONAL],
    ("to_tokens", {"cls_token": False}, (3, 2, 5), (10, 3)),
    ("token_pool", {"kind": "cls"}, TOKENS, (6,)),
    ("token_pool", {"kind": "mean"}, TOKENS, (6,)),
]


def _ids() -> list[str]:
    return [f"{op}-{i}" for i, (op, *_rest) in enumerate(CASES)]


def test_every_op_and_conv_order_is_covered() -> None:
    assert {op for op, *_ in CASES} == set(OPS) - {"input"}
    assert {p["order"] for op, p, *_ in CASES if op == "conv" and "order" in p} == set(CONV_ORDERS)
    assert {p.get("pos", "learned") for op, p, *_ in CASES if op == "to_tokens"} == set(POSITIONAL)


def check_forward_backward(g: ArchGraph, batch: int = 3) -> torch.Tensor:
    """Compile, run forward + backward in training mode; check shapes, finiteness, gradients."""
    shapes = g.validate()
    model = compile_graph(g, seed=1)
    model.train()
    assert model.output_shape == shapes[g.output].dims
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *model.input_shape, generator=gen, requires_grad=True)
    y = model(x)
    assert tuple(y.shape) == (batch, *shapes[g.output].dims)
    assert torch.isfinite(y).all()
    loss = (y * torch.randn(y.shape, generator=gen)).sum()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"
    return y


@pytest.mark.parametrize(("op", "params", "in_shape", "expected"), CASES, ids=_ids())
def test_op_forward_backward(op: str, params: dict[str, Any], in_shape: tuple[int, ...],
                             expected: tuple[int, ...] | None) -> None:
    g = ArchGraph()
    g.add("in", "input", shape=list(in_shape))
    g.add("op", op, ["in"], **params)
    assert g.validate()["op"].dims == (expected or in_shape)
    y = check_forward_backward(g)
    if op == "zero":
        assert (y == 0).all()
    if op in ("identity", "dropout") and params.get("p", 0.0) == 0.0:
        assert y.shape[1:] == in_shape


@pytest.mark.parametrize("kind", ["map", "tokens", "vec"])
@pytest.mark.parametrize("merge", ["sum", "concat", "gate"])
def test_merge_forward_backward(merge: str, kind: str) -> None:
    in_shape = {"map": MAP, "tokens": TOKENS, "vec": VEC}[kind]
    g = ArchGraph()
    g.add("in", "input", shape=list(in_shape))
    if kind == "map":
        g.add("a", "conv", ["in"], out=4, kernel=3)
        g.add("b", "conv", ["in"], out=4, kernel=1, order="conv")
    else:
        g.add("a", "linear", ["in"], out=6)
        g.add("b", "linear", ["in"], out=6, bias=False)
    g.add("m", "identity", ["a", "b", "in"] if merge != "gate" else ["a", "b"], merge=merge,
          merge_params={"kernel": 3, "bias": -2.0} if merge == "gate" else None)
    width = {"sum": 4, "gate": 4, "concat": 12}[merge] if kind == "map" else {"sum": 6, "gate": 6, "concat": 18}[merge]
    merged = g.validate()["m"]
    assert merged.channels == width
    check_forward_backward(g)


def test_merges_compute_the_documented_function() -> None:
    g = ArchGraph()
    g.add("in", "input", shape=[2, 3, 3])
    g.add("a", "act", ["in"], fn="tanh")
    g.add("b", "act", ["in"], fn="sigmoid")
    g.add("sum", "identity", ["a", "b"], merge="sum")
    g.add("cat", "identity", ["b", "sum"], merge="concat")
    g.add("gate", "conv", ["a", "b"], merge="gate", merge_params={"kernel": 1, "bias": -1.0}, out=2, order="conv")
    g.add("out", "identity", ["cat", "gate"], merge="concat")
    model = compile_graph(g).eval()
    x = torch.randn(2, 2, 3, 3)
    a, b = torch.tanh(x), torch.sigmoid(x)
    t = torch.sigmoid(model.gates["gate"].transform(b))
    gated = model.nodes["gate"](a * t + b * (1 - t))
    torch.testing.assert_close(model(x), torch.cat([b, a + b, gated], dim=1))
    assert torch.allclose(model.gates["gate"].transform.bias, torch.full((2,), -1.0))


def test_pre_activation_conv_order() -> None:
    """'bn-relu-conv' normalises the *input* channels, then convolves (He et al. identity mappings)."""
    g = ArchGraph()
    g.add("in", "input", shape=[3, 5, 5])
    g.add("c", "conv", ["in"], out=7, order="bn-relu-conv", bias=True)
    unit = compile_graph(g).nodes["c"]
    kinds = [type(m).__name__ for m in unit]
    assert kinds == ["BatchNorm2d", "ReLU", "Conv2d"]
    assert unit[0].num_features == 3 and unit[2].out_channels == 7 and unit[2].bias is not None
    post = ArchGraph()
    post.add("in", "input", shape=[3, 5, 5])
    post.add("c", "conv", ["in"], out=7, order="conv-bn-relu")
    unit = compile_graph(post).nodes["c"]
    assert [type(m).__name__ for m in unit] == ["Conv2d", "BatchNorm2d", "ReLU"] and unit[1].num_features == 7


def test_sinusoidal_encoding_values() -> None:
    enc = sinusoidal_encoding(4, 5)
    assert enc.shape == (4, 5)
    torch.testing.assert_close(enc[:, 0], torch.sin(torch.arange(4.0)))
    torch.testing.assert_close(enc[:, 1], torch.cos(torch.arange(4.0)))
    torch.testing.assert_close(enc[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0]))


# ------------------------------------------------------------------------------- inference vs torch
@st.composite
def single_op_cases(draw: st.DrawFn) -> tuple[str, Shape, dict[str, Any]]:
    """A spatial op with parameters that may or may not fit the input."""
    op = draw(st.sampled_from(["conv", "sep_conv", "pool", "zero", "factorized_reduce", "adaptive_pool", "mhsa"]))
    shape = Shape("map", (draw(st.integers(1, 6)), draw(st.integers(1, 9)), draw(st.integers(1, 9))))
    kernel = draw(st.integers(1, 5))
    if op == "conv":
        params = {"out": draw(st.integers(1, 6)), "kernel": kernel, "stride": draw(st.integers(1, 3)),
                  "padding": draw(st.integers(-1, 3)), "dilation": draw(st.integers(1, 3)),
                  "groups": draw(st.integers(1, 3)), "order": "conv"}
    elif op == "sep_conv":
        params = {"out": draw(st.integers(1, 6)), "kernel": kernel, "stride": draw(st.integers(1, 3)),
                  "dilation": draw(st.integers(1, 3)), "repeats": draw(st.integers(1, 2))}
    elif op == "pool":
        params = {"kind": draw(st.sampled_from(["max", "avg"])), "kernel": kernel, "stride": draw(st.integers(0, 3)),
                  "padding": draw(st.integers(0, 3)), "ceil_mode": draw(st.booleans()),
                  "count_include_pad": draw(st.booleans())}
    elif op == "zero":
        params = {"stride": draw(st.integers(1, 3))}
    elif op == "factorized_reduce":
        params = {"out": draw(st.integers(2, 7))}
    elif op == "adaptive_pool":
        params = {"kind": draw(st.sampled_from(["max", "avg"])), "size": draw(st.integers(1, 4))}
    else:
        params = {"heads": draw(st.integers(1, 4)), "pos": draw(st.sampled_from(POSITIONAL))}
    return op, shape, params


@settings(max_examples=500, deadline=None)
@given(single_op_cases())
def test_shape_inference_agrees_with_torch(case: tuple[str, Shape, dict[str, Any]]) -> None:
    """Inference accepts exactly what torch can run, with torch's output shape."""
    op, shape, params = case
    resolved = resolve_params(OPS[op].params, params, "x", op)
    try:
        inferred: Shape | None = infer_shape(op, shape, resolved, "x")
    except ArchGraphError as err:
        assert err.node == "x"
        inferred = None
    try:
        with torch.no_grad():
            module = build_op(op, shape, resolved).eval()
            out = module(torch.randn(2, *shape.dims))
    except (RuntimeError, ValueError):
        assert inferred is None, f"torch rejects {op} {params} on {shape}, inference gives {inferred}"
        return
    assert inferred is not None, f"inference rejects {op} {params} on {shape}, torch gives {tuple(out.shape)}"
    assert tuple(out.shape[1:]) == inferred.dims
