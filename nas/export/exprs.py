"""Module expressions of the IR's ops for exported model files, and their shape for loop tables.

:func:`module_expr` writes the ``torch.nn`` expression that builds a node's module (the same
modules as :func:`search_spaces.layers.build_op`), using the helpers of
:mod:`nas.export.templates` where a conv is one of their patterns (``conv_bn``, ``relu_conv_bn``,
``bn_relu_conv``, ``sep_conv``); the generator checks every expression against ``build_op`` on
the meta device. :func:`functional_expr` is the module-free form of the stateless reshaping ops a
forward can apply directly. :func:`atoms` and :func:`skeleton` take an expression apart so that
repeated blocks whose expressions differ only in literals can be built in a loop over a table.
"""

from __future__ import annotations

from typing import Any

from nas.export.pysource import Call, Expr, Seq, lit
from search_spaces.errors import InputError
from search_spaces.ops import Shape, conv_padding

ACTIVATIONS = {"relu": "nn.ReLU", "gelu": "nn.GELU", "sigmoid": "nn.Sigmoid", "tanh": "nn.Tanh", "silu": "nn.SiLU"}


def _kwargs(optional: tuple[tuple[str, Any, Any], ...]) -> tuple[tuple[str, str], ...]:
    """``(name, literal)`` for each (name, value, default) whose value is not the default."""
    return tuple((k, lit(v)) for k, v, default in optional if v != default)


def _conv2d(cin: str, cout: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
            groups: int = 1, bias: bool = True) -> Call:
    optional = (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1), ("groups", groups, 1),
                ("bias", bias, True))
    return Call("nn.Conv2d", (cin, lit(cout)), (("kernel_size", lit(kernel)), *_kwargs(optional)))


def _norm(cls: str, channels: str, eps: float) -> Call:
    return Call(cls, (channels,), (("eps", lit(eps)),) if eps != 1e-5 else ())


def _sequential(layers: list[Expr]) -> Expr:
    return layers[0] if len(layers) == 1 else Call("nn.Sequential", tuple(layers))


def _conv_helper(cin: str, p: dict[str, Any]) -> Call | None:
    """The helper call building conv ``p`` (bias-free, 'same' padding, ReLU), None if it fits none."""
    k, s = p["kernel"], p["stride"]
    if p["bias"] or p["dilation"] != 1 or conv_padding(p) != (k - 1) // 2 or p["act"] != "relu":
        return None
    head = (cin, lit(p["out"]), lit(k))
    if p["order"] in ("conv-bn-relu", "conv-bn"):
        optional = (("stride", s, 1), ("groups", p["groups"], 1), ("eps", p["bn_eps"], 1e-5),
                    ("relu", p["order"] == "conv-bn-relu", True))
        return Call("conv_bn", head, _kwargs(optional))
    if p["order"] in ("relu-conv-bn", "bn-relu-conv") and p["groups"] == 1 and p["bn_eps"] == 1e-5:
        return Call("relu_conv_bn" if p["order"] == "relu-conv-bn" else "bn_relu_conv", head,
                    _kwargs((("stride", s, 1),)))
    return None


def module_expr(op: str, shape: Shape, p: dict[str, Any], channels: str | None = None,
                helpers: bool = True) -> Expr | None:
    """Expression building the module of ``op`` on input ``shape`` (as ``build_op``); None for no module.

    ``channels`` replaces the input channel count by a name (e.g. ``in_chans``); only conv with
    ``groups == 1`` and linear read it as nothing but their input width. ``helpers=False`` writes a
    conv out in ``torch.nn`` even where a helper would fit.
    """
    c = channels if channels is not None else lit(shape.channels)
    if op in ("input", "identity"):
        return None
    if op == "conv":
        helper = _conv_helper(c, p) if helpers else None
        if helper is not None:
            return helper
        conv = _conv2d(c, p["out"], p["kernel"], p["stride"], conv_padding(p), p["dilation"], p["groups"], p["bias"])
        layers: list[Expr] = []
        width = c
        for step in p["order"].split("-"):
            if step == "conv":
                layers.append(conv)
                width = lit(p["out"])
            elif step == "bn":
                layers.append(_norm("nn.BatchNorm2d", width, p["bn_eps"]))
            else:
                layers.append(Call(ACTIVATIONS[p["act"]]))
        return _sequential(layers)
    if op == "sep_conv":
        optional = (("stride", p["stride"], 1), ("dilation", p["dilation"], 1), ("repeats", p["repeats"], 2))
        return Call("sep_conv", (c, lit(p["out"]), lit(p["kernel"])), _kwargs(optional))
    if op == "factorized_reduce":
        return Call("FactorizedReduce", (c, lit(p["out"])))
    if op == "pool":
        kwargs = [("kernel_size", p["kernel"]), ("stride", p["stride"] or p["kernel"])]
        kwargs += [("padding", p["padding"])] if p["padding"] else []
        kwargs += [("ceil_mode", True)] if p["ceil_mode"] else []
        if p["kind"] == "avg" and not p["count_include_pad"]:
            kwargs.append(("count_include_pad", False))
        cls = "nn.MaxPool2d" if p["kind"] == "max" else "nn.AvgPool2d"
        return Call(cls, (), tuple((k, lit(v)) for k, v in kwargs))
    if op == "adaptive_pool":
        return Call("nn.AdaptiveAvgPool2d" if p["kind"] == "avg" else "nn.AdaptiveMaxPool2d", (lit(p["size"]),))
    if op == "global_pool":
        return Call("GlobalPool", (lit(p["kind"]),))
    if op == "flatten":
        return Call("nn.Flatten")
    if op == "linear":
        return Call("nn.Linear", (c, lit(p["out"])), () if p["bias"] else (("bias", "False"),))
    if op == "norm":
        if p["kind"] == "layer":
            return _norm("nn.LayerNorm", c, p["eps"])
        return _norm("nn.BatchNorm2d" if shape.kind == "map" else "nn.BatchNorm1d", c, p["eps"])
    if op == "act":
        return Call(ACTIVATIONS[p["fn"]])
    if op == "dropout":
        return Call("nn.Dropout", (), (("p", lit(p["p"])),))
    if op == "zero":
        return Call("Zero", (), (("stride", lit(p["stride"])),))
    if op == "mhsa":
        length = shape.dims[1] * shape.dims[2] if shape.kind == "map" else shape.dims[0]
        kwargs = {"heads": p["heads"], "qkv_bias": p["qkv_bias"], "pos": p["pos"], "length": length,
                  "spatial": shape.kind == "map"}
        return Call("SelfAttention", (c,), tuple((k, lit(v)) for k, v in kwargs.items()))
    if op == "to_tokens":
        kwargs = {"num_patches": shape.dims[1] * shape.dims[2], "cls_token": p["cls_token"], "pos": p["pos"]}
        return Call("ToTokens", (c,), tuple((k, lit(v)) for k, v in kwargs.items()))
    if op == "token_pool":
        return Call("TokenPool", (lit(p["kind"]),))
    raise InputError(f"no export for op {op!r}")


def gate_expr(shape: Shape, merge_params: dict[str, Any]) -> Call:
    """Expression building the ``HighwayGate`` of a gate merge whose inputs have ``shape``."""
    kwargs = (("kernel", lit(merge_params["kernel"])), ("bias", lit(merge_params["bias"])),
              ("spatial", lit(shape.kind == "map")))
    return Call("HighwayGate", (lit(shape.channels),), kwargs)


FUNCTIONAL_OPS = frozenset({"global_pool", "flatten", "token_pool"})
"""Stateless ops a forward applies as tensor methods instead of modules (:func:`functional_expr`)."""


def functional_expr(op: str, p: dict[str, Any], x: str) -> str:
    """The op applied to the variable ``x`` without a module (ops in :data:`FUNCTIONAL_OPS`)."""
    if op == "global_pool":
        return f"{x}.{'mean' if p['kind'] == 'avg' else 'amax'}(dim=(2, 3))"
    if op == "flatten":
        return f"{x}.flatten(1)"
    return f"{x}[:, 0]" if p["kind"] == "cls" else f"{x}.mean(dim=1)"


def called(e: Expr) -> set[str]:
    """Names of the callables in ``e``."""
    if isinstance(e, str):
        return set()
    if isinstance(e, Seq):
        return set().union(*(called(t) for t in e.items))
    return {e.func}.union(*(called(v) for _, v in e.items()))


def atoms(e: Expr, where: tuple[str, str] = ("", "")) -> list[tuple[str, tuple[str, str]]]:
    """The literal leaves of ``e`` in order, each with (callable, parameter) it is passed to: the
    keyword, or ``#i`` for the i-th positional argument."""
    if isinstance(e, str):
        return [(e, where)]
    if isinstance(e, Seq):
        return [a for t in e.items for a in atoms(t, where)]
    out = []
    for i, arg in enumerate(e.args):
        out += atoms(arg, (e.func, f"#{i}"))
    for key, value in e.kwargs:
        out += atoms(value, (e.func, key))
    return out


def skeleton(e: Expr) -> Expr:
    """``e`` with every literal replaced by ``?``: equal skeletons differ only in literal values."""
    if isinstance(e, str):
        return "?"
    if isinstance(e, Seq):
        return Seq(tuple(skeleton(t) for t in e.items), e.kind)
    return Call(e.func, tuple(skeleton(a) for a in e.args), tuple((k, skeleton(v)) for k, v in e.kwargs))


def substitute(e: Expr, values: list[str]) -> Expr:
    """``e`` with its literal leaves replaced by ``values`` in :func:`atoms` order."""
    it = iter(values)

    def walk(x: Expr) -> Expr:
        if isinstance(x, str):
            return next(it)
        if isinstance(x, Seq):
            return Seq(tuple(walk(t) for t in x.items), x.kind)
        return Call(x.func, tuple(walk(a) for a in x.args), tuple((k, walk(v)) for k, v in x.kwargs))

    return walk(e)
