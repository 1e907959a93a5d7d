"""Export an :class:`ArchGraph` as a standalone, readable PyTorch model file.

:func:`generate_model_source` writes a module that imports only ``torch`` (and ``math`` when a
sinusoidal encoding needs it) and defines one ``nn.Module`` class with the graph's modules as
attributes, a straight-line ``forward_features`` / ``forward_head`` / ``forward``, and:

* one named class per building-block kind the graph uses (``ResidualBlock``, ``InceptionBlock``,
  ...; see :mod:`nas.export.templates`) for every recorded block instance whose nodes are exactly
  what the block's template builds (re-run on a scratch graph) and whose class builds the same
  modules (checked on the meta device); any other instance falls back to inline code;
* every other node inline: ``self.<node> = <module expression with plain ints>``, checked against
  :func:`search_spaces.layers.build_op` the same way, so the export never builds a wrong model.

The returned ``key_map`` maps every key of ``GraphModule(graph).state_dict()`` to the exported
model's key, so trained weights load with ``strict=True``. The output is deterministic.
"""

from __future__ import annotations

import functools
import inspect
import keyword
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import torch
from torch import nn

from nas.export.pysource import LINE, Call, Expr, Seq, docstring, flat, identifier, lit, printable, render
from nas.export.templates import BLOCKS, HELPERS, RESET_PARAMETERS, BlockSpec, helper_closure, library_source
from search_spaces.compiler import _module_key
from search_spaces.errors import BadParameterError, InputError
from search_spaces.ir import ArchGraph
from search_spaces.layers import HighwayGate, build_op
from search_spaces.ops import Shape, conv_padding

_ACTIVATIONS = {"relu": "nn.ReLU", "gelu": "nn.GELU", "sigmoid": "nn.Sigmoid", "tanh": "nn.Tanh", "silu": "nn.SiLU"}
_MODEL_METHODS = frozenset({"forward_features", "forward_head", "reset_parameters"})
_ATTR_RESERVED = frozenset(dir(nn.Module())) | _MODEL_METHODS
_GLOBALS = frozenset({"torch", "nn", "math", *HELPERS, *(spec.class_name for spec in BLOCKS.values())})
# names a forward's locals must not take: its arguments, globals it reads, E741-ambiguous names
_VAR_RESERVED = frozenset({"self", "x", "features", "l", "O", "I"}) | _GLOBALS


@dataclass
class GeneratedModel:
    """A generated model file: ``source`` defines ``class_name``; ``key_map`` maps every key of the
    compiled ``GraphModule(graph).state_dict()`` (buffers included) to the exported model's key."""

    source: str
    class_name: str
    key_map: dict[str, str] = field(default_factory=dict)

    def map_state_dict(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """A compiled model's state dict renamed for the exported class (KeyError on unknown keys)."""
        return {self.key_map[k]: v for k, v in state_dict.items()}


# ----------------------------------------------------------------------------- module expressions
def _conv2d(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
            groups: int = 1, bias: bool = True) -> Call:
    optional = (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1), ("groups", groups, 1),
                ("bias", bias, True))
    kwargs = [("kernel_size", lit(kernel))] + [(k, lit(v)) for k, v, default in optional if v != default]
    return Call("nn.Conv2d", (lit(cin), lit(cout)), tuple(kwargs))


def _norm(cls: str, channels: int, eps: float) -> Call:
    return Call(cls, (lit(channels),), (("eps", lit(eps)),) if eps != 1e-5 else ())


def _sequential(layers: list[Expr]) -> Expr:
    return layers[0] if len(layers) == 1 else Call("nn.Sequential", tuple(layers), split=True)


def module_expr(op: str, shape: Shape, p: dict[str, Any]) -> Expr | None:
    """Expression building the module of ``op`` on input ``shape`` (as ``build_op``); None for no module."""
    c = shape.channels
    if op in ("input", "identity"):
        return None
    if op == "conv":
        conv = _conv2d(c, p["out"], p["kernel"], p["stride"], conv_padding(p), p["dilation"], p["groups"], p["bias"])
        layers: list[Expr] = []
        channels = c
        for step in p["order"].split("-"):
            if step == "conv":
                layers.append(conv)
                channels = p["out"]
            elif step == "bn":
                layers.append(_norm("nn.BatchNorm2d", channels, p["bn_eps"]))
            else:
                layers.append(Call(_ACTIVATIONS[p["act"]]))
        return _sequential(layers)
    if op == "sep_conv":
        k, d = p["kernel"], p["dilation"]
        layers = []
        for r in range(p["repeats"]):
            out = p["out"] if r == p["repeats"] - 1 else c
            layers += [Call("nn.ReLU"), _conv2d(c, c, k, p["stride"] if r == 0 else 1, (k - 1) // 2 * d, d, c, False),
                       _conv2d(c, out, 1, bias=False), _norm("nn.BatchNorm2d", out, 1e-5)]
        return _sequential(layers)
    if op == "factorized_reduce":
        return Call("FactorizedReduce", (lit(c), lit(p["out"])))
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
        return Call("nn.Linear", (lit(c), lit(p["out"])), () if p["bias"] else (("bias", "False"),))
    if op == "norm":
        if p["kind"] == "layer":
            return _norm("nn.LayerNorm", c, p["eps"])
        return _norm("nn.BatchNorm2d" if shape.kind == "map" else "nn.BatchNorm1d", c, p["eps"])
    if op == "act":
        return Call(_ACTIVATIONS[p["fn"]])
    if op == "dropout":
        return Call("nn.Dropout", (), (("p", lit(p["p"])),))
    if op == "zero":
        return Call("Zero", (), (("stride", lit(p["stride"])),))
    if op == "mhsa":
        length = shape.dims[1] * shape.dims[2] if shape.kind == "map" else shape.dims[0]
        kwargs = {"heads": p["heads"], "qkv_bias": p["qkv_bias"], "pos": p["pos"], "length": length,
                  "spatial": shape.kind == "map"}
        return Call("SelfAttention", (lit(c),), tuple((k, lit(v)) for k, v in kwargs.items()))
    if op == "to_tokens":
        kwargs = {"num_patches": shape.dims[1] * shape.dims[2], "cls_token": p["cls_token"], "pos": p["pos"]}
        return Call("ToTokens", (lit(c),), tuple((k, lit(v)) for k, v in kwargs.items()))
    if op == "token_pool":
        return Call("TokenPool", (lit(p["kind"]),))
    raise InputError(f"no export for op {op!r}")


def gate_expr(shape: Shape, merge_params: dict[str, Any]) -> Call:
    """Expression building the ``HighwayGate`` of a gate merge whose inputs have ``shape``."""
    kwargs = (("kernel", lit(merge_params["kernel"])), ("bias", lit(merge_params["bias"])),
              ("spatial", lit(shape.kind == "map")))
    return Call("HighwayGate", (lit(shape.channels),), kwargs)


def _called(e: Expr) -> set[str]:
    """Names of the callables in ``e``."""
    if isinstance(e, str):
        return set()
    if isinstance(e, Seq):
        return set().union(*(_called(t) for t in e.items))
    return {e.func}.union(*(_called(v) for _, v in e.items()))


# ----------------------------------------------------------------------------- structure checks
@functools.cache
def _library() -> dict[str, Any]:
    """The helper and block classes of :mod:`nas.export.templates`, executed."""
    namespace: dict[str, Any] = {"__name__": "nas_export_library"}
    exec(compile(library_source(), "<nas.export.templates>", "exec"), namespace)
    return namespace


def _structure(m: nn.Module) -> tuple:
    """What must agree for two modules to be interchangeable: class name, configuration attributes,
    parameter and buffer names and shapes (and persistence), and the same for every child."""
    plain = (bool, int, float, str, tuple, type(None))
    attrs = tuple(sorted((k, v) for k, v in vars(m).items()
                         if not k.startswith("_") and k != "training" and isinstance(v, plain)))
    params = tuple((k, None if v is None else tuple(v.shape)) for k, v in m._parameters.items())
    buffers = tuple((k, None if v is None else tuple(v.shape)) for k, v in m._buffers.items())
    children = tuple((k, None if v is None else _structure(v)) for k, v in m._modules.items())
    return type(m).__name__, attrs, params, buffers, tuple(sorted(m._non_persistent_buffers_set)), children


def _meta(fn: Callable[[], nn.Module]) -> nn.Module:
    """``fn()`` built on the meta device (no memory, no effect on the global RNG)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return fn()


# ----------------------------------------------------------------------------- analysis
@dataclass
class _Block:
    """An instance of a block kind exported as its class."""

    spec: BlockSpec
    tag: str
    source: str  # the block's input node
    output: str
    members: list[str]  # node ids, compiled order
    kwargs: dict[str, Any]
    subattr: dict[str, str]  # member -> attribute inside the block
    attr: str = ""


class _Analysis:
    """Compiled order, module keys, meta modules and verified block instances of a graph."""

    def __init__(self, graph: ArchGraph) -> None:
        self.graph = graph
        self.shapes = graph.validate()
        self.features = graph.features_node()
        ancestors = nx.ancestors(graph.graph, self.features) | {self.features}
        topo = graph.topological_order()
        self.order = [n for n in topo if n in ancestors] + [n for n in topo if n not in ancestors]
        self.split = len(ancestors)
        index = {node: i for i, node in enumerate(self.order)}
        for node in self.order[self.split:]:  # the compiler's rule, so everything it compiles exports
            early = [s for s in graph.inputs_of(node) if index[s] < self.split and s != self.features]
            if early:
                raise BadParameterError(node, f"head node reads {early[0]!r} from before the features node "
                                              f"{self.features!r}; set arch.features to a node the head depends "
                                              "on alone")
        taken: set[str] = set()
        self.keys = {node: _module_key(node, taken) for node in self.order}
        self.in_shapes = {n: graph.input_shape(n, self.shapes) for n in self.order}
        self.modules: dict[str, nn.Module] = {}
        self.gates: dict[str, nn.Module] = {}
        for node in self.order:
            attrs, shape = graph.attrs(node), self.in_shapes[node]
            if attrs["op"] not in ("input", "identity"):
                self.modules[node] = _meta(lambda a=attrs, s=shape: build_op(a["op"], s, a["params"]))
            if attrs["merge"] == "gate" and len(graph.inputs_of(node)) > 1:
                mp = attrs["merge_params"]
                self.gates[node] = _meta(lambda s=shape, mp=mp: HighwayGate(s, mp["kernel"], mp["bias"]))
        self.blocks: dict[str, _Block] = {}
        for tag in graph.blocks:
            block = self._verify_block(tag)
            if block is not None:
                self.blocks[tag] = block
        self.block_of = {m: b for b in self.blocks.values() for m in b.members}

    def _verify_block(self, tag: str) -> _Block | None:
        """The instance ``tag`` if its class reproduces its nodes exactly, else None (inline export)."""
        g = self.graph
        kind, _, name = tag.partition(":")
        spec = BLOCKS.get(kind)
        if spec is None:
            return None
        members = [n for n in self.order if g.attrs(n)["block"] == tag and n.startswith(name + ".")]
        member_set = set(members)
        sources = {s for n in members for s in g.inputs_of(n) if s not in member_set}
        if not members or len(sources) != 1:
            return None
        (source,) = sources
        scratch = ArchGraph()
        scratch.add(source, "input", shape=list(self.shapes[source].dims))
        try:
            output = spec.template(scratch, source, name, **g.blocks[tag])
        except Exception:  # the recorded arguments do not rebuild this block
            return None
        if set(scratch.graph) - {source} != member_set or output not in member_set:
            return None
        for n in members:
            if (scratch.attrs(n) != g.attrs(n) or scratch.inputs_of(n) != g.inputs_of(n)
                    or (n != output and (n in (self.features, g.output)
                                         or not set(g.graph.succ[n]) <= member_set))):
                return None
        subattr = {n: spec.attr(n[len(name) + 1:]) for n in members}
        expected: dict[str, nn.Module] = {}
        for n in members:
            for module in (self.modules.get(n), self.gates.get(n)):
                if module is not None:
                    if subattr[n] in expected:
                        return None
                    expected[subattr[n]] = module
        cls = _library()[spec.class_name]
        order = list(inspect.signature(cls).parameters)
        try:
            kwargs = spec.ctor(g.blocks[tag], self.shapes[source])
            if not set(kwargs) <= set(order):
                return None
            kwargs = {k: kwargs[k] for k in order if k in kwargs}
            for v in kwargs.values():
                lit(v)
            instance = _meta(lambda: cls(**kwargs))
        except Exception:  # e.g. arguments of the wrong type
            return None
        children = {k: v for k, v in instance.named_children()}
        if set(children) != set(expected) or any(_structure(children[k]) != _structure(v)
                                                 for k, v in expected.items()):
            return None
        return _Block(spec, tag, source, output, members, kwargs, subattr)


# ----------------------------------------------------------------------------- emission
@dataclass
class _Unit:
    """One line of a forward: an inline node or a block instance, producing ``out`` from ``inputs``."""

    out: str
    inputs: list[str]
    block: _Block | None = None


def _shape(shape: Shape) -> str:
    return "(B, " + ", ".join(str(d) for d in shape.dims) + ")"


class _Writer:
    """Names (attributes, locals) and lines of the model class for an analysed graph."""

    def __init__(self, analysis: _Analysis) -> None:
        self.a = analysis
        self.attrs: dict[str, str] = {}  # node -> attribute of its module
        self.gate_attrs: dict[str, str] = {}  # node -> attribute of its gate merge
        self.used: set[str] = set()  # helper / block class names
        self.key_map: dict[str, str] = {}
        g = analysis.graph
        taken: set[str] = set()
        self.units: list[_Unit] = []
        self.alias: dict[str, str] = {}
        for node in analysis.order:
            attrs, ins = g.attrs(node), g.inputs_of(node)
            block = analysis.block_of.get(node)
            if block is not None:
                if node == block.output:
                    block.attr = identifier(block.tag.partition(":")[2], taken, _ATTR_RESERVED)
                    self.units.append(_Unit(node, [block.source], block))
                continue
            if attrs["op"] == "input":
                continue
            if attrs["op"] == "identity" and len(ins) == 1:
                self.alias[node] = ins[0]
                continue
            if node in analysis.modules:
                self.attrs[node] = identifier(node, taken, _ATTR_RESERVED)
            if node in analysis.gates:
                raw = node if node not in analysis.modules else node + "_gate"
                self.gate_attrs[node] = identifier(raw, taken, _ATTR_RESERVED)
            self.units.append(_Unit(node, ins))

    # ---- __init__
    def emit_init(self) -> list[str]:
        a, lines, last_tag = self.a, [], None
        keys_nodes: list[tuple[str, str]] = []
        keys_gates: list[tuple[str, str]] = []
        lib = _library()
        for unit in self.units:
            if unit.block is not None:
                b = unit.block
                self.used.add(b.spec.class_name)
                expr = Call(b.spec.class_name, (), tuple((k, lit(v)) for k, v in b.kwargs.items()))
                lines += render(expr, 8, f"self.{b.attr} = ")
                for n in b.members:
                    for table, modules, out in (("nodes", a.modules, keys_nodes), ("gates", a.gates, keys_gates)):
                        if n in modules:
                            out += [(f"{table}.{a.keys[n]}.{k}", f"{b.attr}.{b.subattr[n]}.{k}")
                                    for k in modules[n].state_dict()]
                last_tag = None
                continue
            node = unit.out
            tag = a.graph.attrs(node)["block"]
            if tag is not None and tag != last_tag and (node in a.modules or node in a.gates):
                lines.append(_comment(tag, 8))
                last_tag = tag
            for table, modules, names, out in (("nodes", a.modules, self.attrs, keys_nodes),
                                               ("gates", a.gates, self.gate_attrs, keys_gates)):
                if node not in modules:
                    continue
                if table == "nodes":
                    expr = module_expr(a.graph.op(node), a.in_shapes[node], a.graph.params(node))
                else:
                    expr = gate_expr(a.in_shapes[node], a.graph.attrs(node)["merge_params"])
                assert expr is not None
                self.used |= _called(expr) & set(HELPERS)
                built = _meta(lambda e=expr: eval(flat(e), lib))  # our own expression, checked below
                if _structure(built) != _structure(modules[node]):
                    raise AssertionError(f"internal error: export of node {node!r} builds {built}, "
                                         f"not {modules[node]}")
                lines += render(expr, 8, f"self.{names[node]} = ")
                out += [(f"{table}.{a.keys[node]}.{k}", f"{names[node]}.{k}") for k in modules[node].state_dict()]
        self.key_map = dict(keys_nodes + keys_gates)
        return lines

    # ---- forward
    def emit_forward(self, units: list[_Unit], root: str, root_name: str, result: str) -> list[str]:
        """Statements computing ``result`` from ``root`` (named ``root_name``) through ``units``."""
        def resolve(node: str) -> str:
            while node != root and node in self.alias:
                node = self.alias[node]
            return node

        n = len(units)
        uses: dict[str, list[int]] = defaultdict(list)
        reads = [list(dict.fromkeys(resolve(s) for s in u.inputs)) for u in units]
        for i, srcs in enumerate(reads):
            for s in srcs:
                uses[s].append(i)
        ret = resolve(result)
        uses[ret].append(n)
        names = {root: root_name}
        x_free_after = max(uses[root], default=-1) if root_name == "x" else -1
        taken: set[str] = {root_name}
        lines: list[str] = []
        last_tag = None
        for i, unit in enumerate(units):
            next_reads = reads[i + 1] if i + 1 < n else [ret]
            if uses[unit.out] == [i + 1] and next_reads == [unit.out] and x_free_after <= i:
                names[unit.out] = "x"
                x_free_after = i + 1
            else:
                names[unit.out] = identifier(unit.block.attr if unit.block else unit.out, taken, _VAR_RESERVED, "v")
            ins = [names[s] for s in (resolve(s) for s in unit.inputs)]
            if unit.block is not None:
                expr: Expr = Call(f"self.{unit.block.attr}", (ins[0],))
                last_tag = None
            else:
                attrs = self.a.graph.attrs(unit.out)
                if attrs["block"] is not None and attrs["block"] != last_tag:
                    lines.append(_comment(attrs["block"], 8))
                last_tag = attrs["block"]
                if len(ins) == 1:
                    expr = ins[0]
                elif attrs["merge"] == "sum":
                    expr = Seq(tuple(ins), "sum")
                elif attrs["merge"] == "concat":
                    dim = "1" if self.a.in_shapes[unit.out].kind == "map" else "-1"
                    expr = Call("torch.cat", (Seq(tuple(ins)),), (("dim", dim),))
                else:
                    expr = Call(f"self.{self.gate_attrs[unit.out]}", (ins[0], ins[1]))
                if unit.out in self.attrs:
                    expr = Call(f"self.{self.attrs[unit.out]}", (expr,))
            lines += render(expr, 8, f"{names[unit.out]} = ")
        lines.append(f"        return {names[ret]}")
        return lines


def _comment(text: str, indent: int) -> str:
    line = " " * indent + "# " + printable(text)
    return line if len(line) <= LINE else line[:LINE - 3] + "..."


def _render_header(header: dict[str, Any] | None) -> list[str]:
    lines: list[str] = []

    def add(key: Any, value: Any, depth: int) -> None:
        pad = "    " * depth
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            for k, v in value.items():
                add(k, v, depth + 1)
        elif isinstance(value, (list, tuple)):
            lines.append(f"{pad}{key}: [{', '.join(repr(v) if isinstance(v, float) else str(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {repr(value) if isinstance(value, float) else value}")

    for key, value in (header or {}).items():
        add(" ".join(str(key).split()), value, 0)
    return [piece for line in lines for piece in line.splitlines() or [""]]


def generate_model_source(graph: ArchGraph, class_name: str = "Net", header: dict[str, Any] | None = None
                          ) -> GeneratedModel:
    """Standalone PyTorch source for ``graph`` (see the module docstring); ``header`` entries (e.g. run
    directory, trial, metrics) are listed in the file's docstring next to the architecture hash."""
    if not class_name.isidentifier() or not class_name.isascii() or keyword.iskeyword(class_name) \
            or class_name in _GLOBALS:
        raise InputError(f"class_name must be a plain identifier not used by the exported file, got {class_name!r}")
    analysis = _Analysis(graph)
    writer = _Writer(analysis)
    init = writer.emit_init()
    index = {node: i for i, node in enumerate(analysis.order)}
    split_units = [u for u in writer.units if index[u.out] < analysis.split]
    head_units = [u for u in writer.units if index[u.out] >= analysis.split]
    features_body = writer.emit_forward(split_units, graph.input, "x", analysis.features)
    head_body = writer.emit_forward(head_units, analysis.features, "features", graph.output)
    shapes = analysis.shapes
    in_shape, out_shape = _shape(shapes[graph.input]), _shape(shapes[graph.output])
    feat_shape = _shape(shapes[analysis.features])
    arch_hash = graph.canonical_hash()

    used_blocks = [spec for spec in BLOCKS.values() if spec.class_name in writer.used]
    helpers = helper_closure(writer.used & set(HELPERS) | {h for s in used_blocks for h in s.helpers})
    title = graph.name or class_name
    doc = [f"{title}: standalone PyTorch model exported by nas.", "",
           f"Architecture hash: {arch_hash}",
           f"Model: {class_name}, input {in_shape} -> output {out_shape}; {len(graph)} graph nodes.",
           *(["", *_render_header(header)] if header else []), "",
           f"Build with ``{class_name}()``; trained weights (keys as in this class) load with ``load_state_dict``."]
    out = [*docstring(doc), ""]
    out += ["import math", ""] if "sinusoidal_encoding" in helpers else []
    out += ["import torch", "from torch import nn", ""]
    for name in helpers:
        out += ["", HELPERS[name][0].strip("\n"), ""]
    for spec in used_blocks:
        out += ["", spec.source.strip("\n"), ""]
    class_doc = [f"{title}: {in_shape} -> {out_shape}.", "", f"Architecture {arch_hash}.",
                 f"``forward_features`` returns {feat_shape}; ``forward_head`` maps that to the output."]
    out += ["", f"class {class_name}(nn.Module):", *docstring(class_doc, 4), "",
            "    def __init__(self) -> None:", "        super().__init__()", *init,
            "        self.reset_parameters()", "", RESET_PARAMETERS.strip("\n"), "",
            "    def forward_features(self, x: torch.Tensor) -> torch.Tensor:",
            *docstring([f"{in_shape} -> features {feat_shape}."], 8), *features_body, "",
            "    def forward_head(self, features: torch.Tensor) -> torch.Tensor:",
            *docstring([f"Features {feat_shape} -> {out_shape}."], 8), *head_body, "",
            "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
            *docstring([f"{in_shape} -> {out_shape}."], 8),
            "        return self.forward_head(self.forward_features(x))", "", "",
            'if __name__ == "__main__":',
            f"    model = {class_name}().eval()",
            f"    print(model(torch.randn(2, {', '.join(str(d) for d in shapes[graph.input].dims)})).shape)", ""]
    source = "\n".join(out)
    return GeneratedModel(source, class_name, writer.key_map)
