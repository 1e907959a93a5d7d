"""Operation vocabulary of the graph IR: typed parameters and shape inference (no torch here).

Tensors flowing along edges have one of three kinds (batch dimension omitted):

* ``map``:    (C, H, W) feature map
* ``tokens``: (N, D) token sequence
* ``vec``:    (D,) feature vector

Each op has an :class:`OpSpec` giving its parameters (with defaults and checks) and a shape
rule ``infer(input_shape, params) -> output_shape``. The torch module for each op lives in
:mod:`search_spaces.layers`; this module stays plain data so graphs can be built, validated,
hashed and serialised without touching torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from search_spaces.errors import (
    BadParameterError,
    ChannelMismatchError,
    InputError,
    ResolutionMismatchError,
    UnknownOpError,
)


@dataclass(frozen=True)
class Shape:
    """Shape of one sample: ``kind`` in {"map", "tokens", "vec"} and its dims."""

    kind: str
    dims: tuple[int, ...]

    @property
    def channels(self) -> int:
        """C for maps, D for tokens and vectors."""
        return self.dims[0] if self.kind == "map" else self.dims[-1]

    def __str__(self) -> str:
        return f"{self.kind}({'x'.join(map(str, self.dims))})"

    @staticmethod
    def of(dims: tuple[int, ...] | list[int]) -> Shape:
        kind = {3: "map", 2: "tokens", 1: "vec"}.get(len(dims))
        if kind is None or any(int(d) < 1 for d in dims):
            raise InputError(f"shape must be (C,H,W), (N,D) or (D,) of positive ints, got {dims}")
        return Shape(kind, tuple(int(d) for d in dims))


class _ShapeRuleError(Exception):
    """Raised inside a shape rule; the graph validator turns it into a typed error with the node."""

    def __init__(self, error_type: type, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


def _channel(reason: str) -> _ShapeRuleError:
    return _ShapeRuleError(ChannelMismatchError, reason)


def _resolution(reason: str) -> _ShapeRuleError:
    return _ShapeRuleError(ResolutionMismatchError, reason)


def _bad(reason: str) -> _ShapeRuleError:
    return _ShapeRuleError(BadParameterError, reason)


@dataclass(frozen=True)
class Param:
    """One op parameter: python type, default (None = required), allowed choices, lower/upper bound."""

    type: type
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class OpSpec:
    name: str
    params: dict[str, Param]
    input_kinds: tuple[str, ...]
    infer: Callable[[Shape, dict[str, Any]], Shape]
    doc: str = ""


CONV_ORDERS = (
    "conv",
    "conv-bn",
    "conv-bn-relu",
    "conv-relu",
    "relu-conv",
    "relu-conv-bn",
    "bn-relu-conv",
)
ACTIVATIONS = ("relu", "gelu", "sigmoid", "tanh", "silu")
POSITIONAL = ("none", "learned", "sinusoidal")


def _require_kind(shape: Shape, kinds: tuple[str, ...], op: str) -> None:
    if shape.kind not in kinds:
        raise _channel(f"{op} takes {' or '.join(kinds)} input, got {shape}")


def _spatial(size: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil: bool = False) -> int:
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (math.ceil(span / stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + padding:  # torch drops a window starting in the padding
        out -= 1
    return out


def conv_padding(params: dict[str, Any]) -> int:
    """Explicit padding, or 'same'-style (k-1)//2*dilation when padding is -1 (the default)."""
    if params["padding"] >= 0:
        return int(params["padding"])
    return (params["kernel"] - 1) // 2 * params.get("dilation", 1)


def _map_out(shape: Shape, out: int, kernel: int, stride: int, padding: int, dilation: int = 1,
             ceil: bool = False, op: str = "") -> Shape:
    _c, h, w = shape.dims
    oh = _spatial(h, kernel, stride, padding, dilation, ceil)
    ow = _spatial(w, kernel, stride, padding, dilation, ceil)
    if oh < 1 or ow < 1:
        raise _resolution(f"{op} with kernel {kernel}, stride {stride}, padding {padding} "
                          f"does not fit input {shape}")
    return Shape("map", (out, oh, ow))


def _infer_input(shape: Shape, p: dict[str, Any]) -> Shape:
    try:
        return Shape.of(tuple(p["shape"]))
    except ValueError as err:
        raise _bad(str(err)) from None


def _infer_conv(shape: Shape, p: dict[str, Any]) -> Shape:
    _require_kind(shape, ("map",), "conv")
    if shape.channels % p["groups"] or p["out"] % p["groups"]:
        raise _channel(f"groups={p['groups']} must divide input channels {shape.channels} "
                       f"and output channels {p['out']}")
    return _map_out(shape, p["out"], p["kernel"], p["stride"], conv_padding(p), p["dilation"], op="conv")


def _infer_sep_conv(shape: Shape, p: dict[str, Any]) -> Shape:
    _require_kind(shape, ("map",), "sep_conv")
    pad = (p["kernel"] - 1) // 2 * p["dilation"]
    out = _map_out(shape, p["out"], p["kernel"], p["stride"], pad, p["dilation"], op="sep_conv")
    if p["repeats"] == 2:  # the second (stride-1) unit shrinks the map again when the kernel is even
        out = _map_out(out, p["out"], p["kernel"], 1, pad, p["dilation"], op="sep_conv")
    return out


def _infer_factorized_reduce(shape: Shape, p: dict[str, Any]) -> Shape:
    _require_kind(shape, ("map",), "factorized_reduce")
    _c, h, w = shape.dims
    if p["out"] % 2:
        raise _bad(f"factorized_reduce needs an even output channel count, got {p['out']}")
    if h % 2 or w % 2:
        raise _resolution(f"factorized_reduce needs even height and width, got {shape}")
    return Shape("map", (p["out"], h // 2, w // 2))


def _infer_pool(shape: Shape, p: dict[str, Any]) -> Shape:
    _require_kind(shape, ("map",), "pool")
    stride = p["stride"] or p["kernel"]
    if p["padding"] * 2 > p["kernel"]:
        raise _bad(f"pool padding {p['padding']} must be at most half the kernel {p['kernel']}")
    return _map_out(shape, shape.channels, p["kernel"], stride, p["padding"], ceil=p["ceil_mode"], op="pool")


def _infer_adaptive_pool(shape: Shape, p: dict[str, Any]) -> Shape:
    _require_kind(shape, ("map",), "adaptive_pool")
    return Shape("map", (shape.channels, p["size"], p["size"]))


def _infer_global_pool(shape: Shape, p: dict[str, Any]) -> Shape:
    _require_kind(shape, ("map",), "global_pool")
    return Shape("vec", (shape.channels,))


def _infer_flatten(shape: Shape, p: dict[str, Any]) -> Shape:
    _require_kind(shape, ("map", "tokens"), "flatten")
    return Shape("vec", (math.prod(shape.dims),))


def _infer_linear(shape: Shape, p: dict[str, Any]) -> Shape:
    _require_kind(shape, ("vec", "tokens"), "linear")
    return Shape(shape.kind, (*shape.dims[:-1], p["out"]))


def _infer_norm(shape: Shape, p: dict[str, Any]) -> Shape:
    if p["kind"] == "layer" and shape.kind == "map":
        raise _bad("layer norm applies to tokens or vectors; use kind='batch' for feature maps")
    if p["kind"] == "batch" and shape.kind == "tokens":
        raise _bad("batch norm applies to feature maps or vectors; use kind='layer' for tokens")
    return shape


def _same(shape: Shape, p: dict[str, Any]) -> Shape:
    return shape


def _infer_zero(shape: Shape, p: dict[str, Any]) -> Shape:
    if p["stride"] == 1:
        return shape
    _require_kind(shape, ("map",), "zero with stride")
    c, h, w = shape.dims
    return Shape("map", (c, -(-h // p["stride"]), -(-w // p["stride"])))


def _infer_mhsa(shape: Shape, p: dict[str, Any]) -> Shape:
    _require_kind(shape, ("map", "tokens"), "mhsa")
    if shape.channels % p["heads"]:
        raise _channel(f"{p['heads']} heads must divide the embedding width {shape.channels}")
    return shape


def _infer_to_tokens(shape: Shape, p: dict[str, Any]) -> Shape:
    _require_kind(shape, ("map",), "to_tokens")
    c, h, w = shape.dims
    return Shape("tokens", (h * w + int(p["cls_token"]), c))


def _infer_token_pool(shape: Shape, p: dict[str, Any]) -> Shape:
    _require_kind(shape, ("tokens",), "token_pool")
    return Shape("vec", (shape.channels,))


def _conv_params() -> dict[str, Param]:
    return {
        "out": Param(int, minimum=1),
        "kernel": Param(int, 3, minimum=1),
        "stride": Param(int, 1, minimum=1),
        "padding": Param(int, -1, minimum=-1),
        "dilation": Param(int, 1, minimum=1),
        "groups": Param(int, 1, minimum=1),
        "bias": Param(bool, False),
        "order": Param(str, "conv-bn-relu", CONV_ORDERS),
        "act": Param(str, "relu", ACTIVATIONS),
        "bn_eps": Param(float, 1e-5, minimum=0.0),
    }


_SPECS = [
    OpSpec("input", {"shape": Param(list)}, ("map", "tokens", "vec"), _infer_input,
           "graph input; shape (C,H,W), (N,D) or (D,)"),
    OpSpec("conv", _conv_params(), ("map",), _infer_conv,
           "2-D convolution with BN/activation in the given order (e.g. pre-activation 'bn-relu-conv')"),
    OpSpec("sep_conv", {"out": Param(int, minimum=1), "kernel": Param(int, 3, minimum=1),
                        "stride": Param(int, 1, minimum=1), "dilation": Param(int, 1, minimum=1),
                        "repeats": Param(int, 2, (1, 2))},
           ("map",), _infer_sep_conv,
           "DARTS separable conv: (ReLU-depthwise-pointwise-BN) x repeats; dilation 2, repeats 1 = dil_conv"),
    OpSpec("factorized_reduce", {"out": Param(int, minimum=2)}, ("map",), _infer_factorized_reduce,
           "ReLU, two offset stride-2 1x1 convs concatenated, BN (halves the resolution)"),
    OpSpec("pool", {"kind": Param(str, "max", ("max", "avg")), "kernel": Param(int, 3, minimum=1),
                    "stride": Param(int, 0, minimum=0), "padding": Param(int, 0, minimum=0),
                    "ceil_mode": Param(bool, False), "count_include_pad": Param(bool, True)},
           ("map",), _infer_pool, "max or average pooling; stride 0 means stride = kernel"),
    OpSpec("adaptive_pool", {"kind": Param(str, "avg", ("max", "avg")), "size": Param(int, 1, minimum=1)},
           ("map",), _infer_adaptive_pool, "adaptive pooling to size x size"),
    OpSpec("global_pool", {"kind": Param(str, "avg", ("max", "avg"))}, ("map",), _infer_global_pool,
           "global pooling: map (C,H,W) -> vec (C,)"),
    OpSpec("flatten", {}, ("map", "tokens"), _infer_flatten, "flatten to a vector"),
    OpSpec("linear", {"out": Param(int, minimum=1), "bias": Param(bool, True)}, ("vec", "tokens"),
           _infer_linear, "fully connected layer on the last dimension"),
    OpSpec("norm", {"kind": Param(str, "batch", ("batch", "layer")), "eps": Param(float, 1e-5, minimum=0.0)},
           ("map", "tokens", "vec"), _infer_norm, "batch norm (maps, vectors) or layer norm (tokens, vectors)"),
    OpSpec("act", {"fn": Param(str, "relu", ACTIVATIONS)}, ("map", "tokens", "vec"), _same, "activation"),
    OpSpec("dropout", {"p": Param(float, 0.5, minimum=0.0, maximum=1.0)}, ("map", "tokens", "vec"), _same,
           "dropout"),
    OpSpec("identity", {}, ("map", "tokens", "vec"), _same, "identity (also: skip connection, merge point)"),
    OpSpec("zero", {"stride": Param(int, 1, minimum=1)}, ("map", "tokens", "vec"), _infer_zero,
           "zeros of the input's shape (strided for maps): the 'none' op"),
    OpSpec("mhsa", {"heads": Param(int, 1, minimum=1), "qkv_bias": Param(bool, True),
                    "pos": Param(str, "none", POSITIONAL)},
           ("map", "tokens"), _infer_mhsa,
           "multi-head self-attention over tokens, or over the H*W positions of a map, with output projection"),
    OpSpec("to_tokens", {"cls_token": Param(bool, True), "pos": Param(str, "learned", POSITIONAL)},
           ("map",), _infer_to_tokens, "map (C,H,W) -> tokens (H*W [+1 class token], C) with positional encoding"),
    OpSpec("token_pool", {"kind": Param(str, "cls", ("cls", "mean"))}, ("tokens",), _infer_token_pool,
           "tokens (N,D) -> vec (D,): the class token or the mean"),
]
OPS: dict[str, OpSpec] = {spec.name: spec for spec in _SPECS}

MERGES = ("sum", "concat", "gate")
GATE_PARAMS = {"kernel": Param(int, 1, minimum=1), "bias": Param(float, -1.0)}


def resolve_params(spec_params: dict[str, Param], given: dict[str, Any], node: str, what: str) -> dict[str, Any]:
    """Fill defaults and check types/choices/bounds; raise BadParameterError naming the node."""
    unknown = sorted(set(given) - set(spec_params))
    if unknown:
        raise BadParameterError(node, f"{what} has no parameter(s) {unknown}; known: {sorted(spec_params)}")
    resolved: dict[str, Any] = {}
    for name, param in spec_params.items():
        value = given.get(name, param.default)
        if value is None:
            raise BadParameterError(node, f"{what} needs parameter {name!r}")
        if param.type is list:
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool)
                                                          for v in value)
            value = list(value) if ok else value
        elif param.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            value = float(value) if ok else value
        elif param.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, param.type)
        if not ok:
            raise BadParameterError(node, f"{what} parameter {name!r} must be {param.type.__name__}, got {value!r}")
        if param.choices is not None and value not in param.choices:
            raise BadParameterError(node, f"{what} parameter {name!r} must be one of {param.choices}, got {value!r}")
        if param.minimum is not None and value < param.minimum:
            raise BadParameterError(node, f"{what} parameter {name!r} must be >= {param.minimum}, got {value!r}")
        if param.maximum is not None and value > param.maximum:
            raise BadParameterError(node, f"{what} parameter {name!r} must be <= {param.maximum}, got {value!r}")
        resolved[name] = value
    return resolved


def op_spec(op: str, node: str) -> OpSpec:
    try:
        return OPS[op]
    except KeyError:
        raise UnknownOpError(node, f"op {op!r} is not known; known ops: {sorted(OPS)}") from None


def infer_shape(op: str, shape: Shape, params: dict[str, Any], node: str) -> Shape:
    """Output shape of ``op`` on ``shape``; raises the typed shape/parameter error naming ``node``."""
    spec = op_spec(op, node)
    if shape.kind not in spec.input_kinds:
        raise ChannelMismatchError(node, f"{op} takes {' or '.join(spec.input_kinds)} input, got {shape}")
    try:
        return spec.infer(shape, params)
    except _ShapeRuleError as err:
        raise err.error_type(node, err.reason) from None
