"""Export an :class:`ArchGraph` as a standalone, readable PyTorch model file in timm's shape.

:func:`generate_model_source` writes a module that imports only ``torch`` (``math`` when a
sinusoidal encoding needs it; ``safetensors`` inside ``create_model`` when it loads weights) with:

* the structure :mod:`nas.export.structure` finds: one named class per block or cell kind the graph
  uses (cells take their genotype as data, a module-level constant), stages of repeated blocks built
  in a loop from a table of the arguments that differ, runs of inline modules of one block as an
  ``nn.Sequential``, every other node as an inline module expression with plain ints;
* timm's model contract (:mod:`nas.export.contract`): ``__init__(num_classes, in_chans, drop_rate)``,
  ``forward_features``, ``forward_head(x, pre_logits=False)``, ``get_classifier``, ``reset_classifier``,
  a ``PRETRAINED_CFG`` dict (input size, normalisation, class count, weights file) and an entry point
  ``create_model(pretrained=False, **kwargs)``.

Every module expression is checked against :func:`search_spaces.layers.build_op` on the meta device
and every class instance against its nodes (see :mod:`nas.export.structure`), so the export never
builds a wrong model. The returned ``key_map`` maps every key of ``GraphModule(graph).state_dict()``
to the exported model's key (in the compiled order), so trained weights load with ``strict=True``.
The output is deterministic.
"""

from __future__ import annotations

import inspect
import keyword
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nas.export import contract
from nas.export.cells import CELLS
from nas.export.exprs import atoms as expr_atoms
from nas.export.exprs import called, functional_expr, substitute
from nas.export.pretrained import Normalisation
from nas.export.pysource import LINE, Call, Expr, Seq, docstring, flat, identifier, lit, pack, render
from nas.export.structure import Step, Structure, Unit, library, module_structure, on_meta
from nas.export.templates import BLOCKS, HELPERS, BlockSpec, helper_closure
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.ops import Shape

_MODEL_METHODS = frozenset({"forward_features", "forward_head", "reset_parameters", "get_classifier",
                            "reset_classifier", "num_classes", "num_features", "pretrained_cfg", "default_cfg",
                            "head_drop"})
_ATTR_RESERVED = frozenset(dir(nn.Module())) | _MODEL_METHODS
_GLOBALS = frozenset({"torch", "nn", "math", "Any", "OPS", "PRETRAINED_CFG", "GENOTYPE", "NORMAL", "REDUCE",
                      "create_model", *HELPERS, *(spec.class_name for spec in (*BLOCKS.values(), *CELLS))})
# names a forward's locals and a loop's variables must not take: arguments, globals, E741-ambiguous names
_VAR_RESERVED = frozenset({"self", "x", "pre_logits", "s0", "s1", "num_classes", "in_chans", "drop_rate", "l", "O",
                           "I"}) | _GLOBALS
# loop variables for table columns, by (callable, parameter)
_SHORT = {"in_channels": "in_ch", "out_channels": "out_ch", "num_features": "channels", "kernel_size": "kernel"}


@dataclass
class GeneratedModel:
    """A generated model file: ``source`` defines ``class_name``; ``key_map`` maps every key of the
    compiled ``GraphModule(graph).state_dict()`` (buffers included) to the exported model's key;
    ``pretrained_cfg`` is the file's ``PRETRAINED_CFG``."""

    source: str
    class_name: str
    key_map: dict[str, str] = field(default_factory=dict)
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)

    def map_state_dict(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """A compiled model's state dict renamed for the exported class (KeyError on unknown keys)."""
        return {self.key_map[k]: v for k, v in state_dict.items()}


def _shape(shape: Shape) -> str:
    return "(B, " + ", ".join(str(d) for d in shape.dims) + ")"


class _Writer:
    """Attribute names, ``__init__`` and forward lines and the key map of the model class."""

    def __init__(self, s: Structure) -> None:
        self.s = s
        index = {node: i for i, node in enumerate(s.order)}
        features = [u for u in s.units if index[u.out] < s.split]
        head = [u for u in s.units if index[u.out] >= s.split]
        self.sections = (s.find_steps(features, s.features), s.find_steps(head, s.graph.output))
        s.without_rare_helpers([*self.sections[0], *self.sections[1]])
        self.used: set[str] = set()  # helper / class names the file needs
        self.constants: dict[str, tuple[str, tuple]] = {}  # literal -> (constant name, value)
        self.classes: dict[str, list[dict[str, Any]]] = {}  # class name -> constructor kwargs of its instances
        self.specs: dict[str, BlockSpec] = {}  # class name -> the spec of its instances
        self.paths: dict[str, str] = {}  # node -> path of its module; gates under "gate:" + node
        self.spliced: dict[str, tuple[str, int]] = {}  # node -> (group, index of its first layer in the group)
        taken: set[str] = set()
        for step in (*self.sections[0], *self.sections[1]):
            if step.kind == "head_drop":
                step.attr = "head_drop"
            elif step.name:
                step.attr = identifier(step.name, taken, _ATTR_RESERVED)
            if step.units[0].gate is not None and step.kind in ("inline", "merge"):
                node = step.units[0].out
                step.gate_attr = identifier(node if step.kind == "merge" else node + "_gate", taken, _ATTR_RESERVED)

    # ---- __init__
    def emit_init(self) -> list[str]:
        lines: list[str] = []
        for step in (*self.sections[0], *self.sections[1]):
            lines += self._init_step(step)
        return lines

    def _checked(self, unit: Unit) -> Expr:
        """The unit's module expression, checked to build the compiled node's module."""
        assert unit.expr is not None
        self.used |= called(unit.expr) & set(HELPERS)
        names = {**library(), "in_chans": self.s.in_shapes[unit.out].channels}
        built = on_meta(lambda: eval(flat(unit.expr), names))  # our own expression, checked here
        if module_structure(built) != module_structure(self.s.modules[unit.out]):
            raise AssertionError(f"internal error: export of node {unit.out!r} builds {built}, "
                                 f"not {self.s.modules[unit.out]}")
        return unit.expr

    def _init_step(self, step: Step) -> list[str]:
        lines: list[str] = []
        unit = step.units[0]
        if step.kind in ("inline", "merge") and unit.gate is not None:
            self.paths["gate:" + unit.out] = step.gate_attr
            lines += render(unit.gate, 8, f"self.{step.gate_attr} = ")
            self.used.add("HighwayGate")
        if step.kind == "inline":
            self.paths[unit.out] = step.attr
            return render(self._checked(unit), 8, f"self.{step.attr} = ") + lines
        if step.kind == "group":
            return render(Call("nn.Sequential", tuple(self._group_layers(step))), 8, f"self.{step.attr} = ")
        if step.kind == "block":
            self._register(unit)
            self._block_paths(unit, step.attr)
            return render(self._block_call(unit), 8, f"self.{step.attr} = ")
        if step.kind in ("chain", "pairs"):
            return self._stage(step)
        if step.kind == "head_drop":
            return ["        self.head_drop = nn.Dropout(drop_rate)"]
        if step.kind == "classifier":
            self.paths[unit.out] = step.attr
            drop = [] if self.s.head_dropout() is not None else ["        self.head_drop = nn.Dropout(drop_rate)"]
            return [*drop, f"        self.{step.attr} = {contract.classifier_expr(self.s)}"]
        return lines

    def _group_layers(self, step: Step) -> list[Expr]:
        """The layers of a group, a member's own ``nn.Sequential`` spliced in (torchvision's flat layout)."""
        layers: list[Expr] = []
        for u in step.units:
            expr = self._checked(u)
            if isinstance(expr, Call) and expr.func == "nn.Sequential" and not expr.kwargs:
                self.spliced[u.out] = (step.attr, len(layers))
                layers += expr.args
            else:
                self.paths[u.out] = f"{step.attr}.{len(layers)}"
                layers.append(expr)
        return layers

    def locate(self, node: str, key: str) -> str:
        """The exported name of ``key`` (a parameter, buffer or submodule name, '' for the module itself) of
        ``node``'s module; ``gate:`` + node for its gate."""
        if node in self.spliced:
            group, offset = self.spliced[node]
            first, _, rest = key.partition(".")
            return f"{group}.{offset + int(first)}" + (f".{rest}" if rest else "")
        return self.paths[node] + (f".{key}" if key else "")

    def _block_paths(self, unit: Unit, prefix: str) -> None:
        assert unit.block is not None
        for member, path in unit.block.paths.items():  # a member has a module or a gate (highway)
            key = member if member in self.s.modules else "gate:" + member
            self.paths[key] = f"{prefix}.{path}"

    def _value(self, unit: Unit, param: str) -> str:
        """The literal of a constructor argument; tuples become module-level constants."""
        assert unit.block is not None
        value = unit.block.kwargs[param]
        text = lit(value)
        if not isinstance(value, tuple):
            return text
        if text not in self.constants:
            base = unit.block.spec.constant_name(param, unit.block.kwargs)
            name, n = base, 2
            while name in {c for c, _ in self.constants.values()}:
                name, n = f"{base}_{n}", n + 1
            self.constants[text] = (name, value)
        return self.constants[text][0]

    def _block_call(self, unit: Unit, variables: dict[str, str] | None = None) -> Call:
        """``Class(param=value, ...)`` with ``variables`` (param -> loop variable) for the arguments that
        differ along a stage, leaving out the others where they equal the constructor's default."""
        block = unit.block
        assert block is not None
        variables = variables or {}
        params = inspect.signature(library(block.spec)[block.spec.class_name]).parameters
        kwargs = tuple((k, variables[k] if k in variables else self._value(unit, k)) for k, v in block.kwargs.items()
                       if k in variables or params[k].default is inspect.Parameter.empty or v != params[k].default)
        return Call(block.spec.class_name, (), kwargs)

    def _register(self, unit: Unit) -> None:
        """Note a class instance: the file defines its class, with the variants its instances need."""
        assert unit.block is not None
        self.specs[unit.block.spec.class_name] = unit.block.spec
        self.classes.setdefault(unit.block.spec.class_name, []).append(unit.block.kwargs)

    def _stage_table(self, step: Step) -> tuple[Expr, list[str], list[str]]:
        """The call that builds every unit of a stage, its loop variables and the table's rows (one literal
        per unit: the variables' values, a tuple when there are several)."""
        units = step.units
        if units[0].block is not None:
            params = list(units[0].block.kwargs)
            cells = [[self._value(u, k) for k in params] for u in units]
            where = [("", k) for k in params]
        else:
            found = [expr_atoms(self._checked(u)) for u in units]
            cells = [[a for a, _ in f] for f in found]
            where = [w for _, w in found[0]]
        columns = list(zip(*cells, strict=True))
        names: dict[tuple[str, ...], str] = {}  # a column of differing values -> its loop variable
        taken: set[str] = set()
        for col, (func, param) in zip(columns, where, strict=True):
            if len(set(col)) > 1 and col not in names:
                raw = _param_name(func, param)
                names[col] = identifier(_SHORT.get(raw, raw), taken, _VAR_RESERVED, "v")
        if units[0].block is not None:
            call: Expr = self._block_call(units[0], {p: names[col] for p, col in zip(params, columns, strict=True)
                                                     if col in names})
        else:
            call = substitute(units[0].expr, [names.get(col, col[0]) for col in columns])  # type: ignore[arg-type]
        varying = list(names)
        rows = [varying[0][k] if len(varying) == 1 else "(" + ", ".join(col[k] for col in varying) + ")"
                for k in range(len(units))] if varying else []
        return call, list(names.values()), rows

    def _stage(self, step: Step) -> list[str]:
        """``nn.Sequential`` (a chain) or ``nn.ModuleList`` (pairs) built in a loop over the stage's table."""
        for i, unit in enumerate(step.units):
            if unit.block is not None:
                self._register(unit)
                self._block_paths(unit, f"{step.attr}.{i}")
            else:
                self.paths[unit.out] = f"{step.attr}.{i}"
        call, variables, rows = self._stage_table(step)
        if variables:
            loop = f"for {', '.join(variables)} in "
            table = "(" + ", ".join(rows) + ("," if len(rows) == 1 else "") + ")"
        else:
            loop, table = "for _ in ", f"range({len(step.units)})"
        opening, closing = ("nn.ModuleList([", "])") if step.kind == "pairs" else ("nn.Sequential(*[", "])")
        one = f"        self.{step.attr} = {opening}{flat(call)} {loop}{table}{closing}"
        if len(one) <= LINE:
            return [one]
        lines = [f"        self.{step.attr} = {opening}", *render(call, 12)]
        if len(f"            {loop}{table}") <= LINE:
            lines.append(f"            {loop}{table}")
        else:
            lines += [f"            {loop}(", *pack(rows, 16), "            )"]
        return [*lines, f"        {closing}"]

    # ---- forward
    def emit_forward(self, steps: list[Step], root: str, result: str, pre_logits: bool = False) -> list[str]:
        """Statements computing ``result`` from ``root`` (named ``x``) through ``steps``."""
        s = self.s
        root, result = s.resolve(root), s.resolve(result)
        classifier = steps[-1] if pre_logits and steps and steps[-1].kind == "classifier" else None
        body = steps[:-1] if classifier is not None else steps
        n = len(body)
        uses: dict[str, list[int]] = defaultdict(list)
        reads = [list(dict.fromkeys(st.inputs)) for st in body]
        for i, srcs in enumerate(reads):
            for src in srcs:
                uses[src].append(i)
        ret = classifier.inputs[0] if classifier is not None else result
        uses[ret].append(n)
        names = {root: "x"}
        x_free_after = max(uses[root], default=-1)
        taken: set[str] = {"x"}
        lines: list[str] = []
        for i, step in enumerate(body):
            next_reads = reads[i + 1] if i + 1 < n else [ret]
            ins = [names[src] for src in step.inputs]
            if i == n - 1 and step.out == ret and classifier is None and step.kind != "pairs":
                return [*lines, *render(self._statement(step, ins), 8, "return ")]
            if step.kind == "pairs":
                lines += self._pairs_loop(step, ins)
                names[step.units[-2].out], names[step.out] = "s0", "s1"
                continue
            if uses[step.out] == [i + 1] and next_reads == [step.out] and x_free_after <= i:
                names[step.out] = "x"
                x_free_after = i + 1
            else:
                raw = step.attr or step.gate_attr or step.out
                names[step.out] = identifier(raw, taken, _VAR_RESERVED, "v")
            lines += render(self._statement(step, ins), 8, f"{names[step.out]} = ")
        if classifier is not None:
            if self.s.head_dropout() is None:  # timm's head dropout (drop_rate) before the classifier
                lines.append(f"        {names[ret]} = self.head_drop({names[ret]})")
            lines.append(f"        return {names[ret]} if pre_logits else self.{classifier.attr}({names[ret]})")
        else:
            lines.append(f"        return {names[ret]}")
        return lines

    def _pairs_loop(self, step: Step, ins: list[str]) -> list[str]:
        first = f"        s0 = s1 = {ins[0]}" if ins[0] == ins[1] else f"        s0, s1 = {ins[0]}, {ins[1]}"
        item = "cell" if step.units[0].block is not None and "cell" in step.units[0].block.spec.kind else "block"
        return [first, f"        for {item} in self.{step.attr}:", f"            s0, s1 = s1, {item}(s0, s1)"]

    def _statement(self, step: Step, ins: list[str]) -> Expr:
        if step.kind in ("block", "chain", "group", "head_drop", "classifier"):
            return Call(f"self.{step.attr}", tuple(ins))
        unit = step.units[0]
        attrs = self.s.graph.attrs(unit.out)
        if step.kind == "functional":
            return functional_expr(attrs["op"], attrs["params"], ins[0])
        if len(ins) == 1:
            expr: Expr = ins[0]
        elif attrs["merge"] == "sum":
            expr = Seq(tuple(ins), "sum")
        elif attrs["merge"] == "concat":
            dim = "1" if self.s.in_shapes[unit.out].kind == "map" else "-1"
            expr = Call("torch.cat", (Seq(tuple(ins)),), (("dim", dim),))
        else:
            expr = Call(f"self.{step.gate_attr}", (ins[0], ins[1]))
        return Call(f"self.{step.attr}", (expr,)) if step.kind == "inline" else expr

    # ---- weights
    def key_map(self) -> dict[str, str]:
        """Compiled key -> exported key for every parameter and buffer, in the compiled order."""
        s, out = self.s, {}
        for table, modules, prefix in (("nodes", s.modules, ""), ("gates", s.gates, "gate:")):
            for node, module in modules.items():
                for k in module.state_dict():
                    out[f"{table}.{s.keys[node]}.{k}"] = self.locate(prefix + node, k)
        return out


def _param_name(func: str, param: str) -> str:
    """The name of a callable's parameter: ``param`` itself, or the name of positional ``#i``."""
    if not param.startswith("#"):
        return param
    try:
        fn = eval(func, library())  # a name of the library namespace (nn.Conv2d, conv_bn, ...)
        return list(inspect.signature(fn).parameters)[int(param[1:])]
    except (NameError, AttributeError, IndexError, TypeError, ValueError):
        return "v"


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


def generate_model_source(graph: ArchGraph, class_name: str = "Net", header: dict[str, Any] | None = None,
                          normalisation: Normalisation | None = None, weights_file: str | None = None
                          ) -> GeneratedModel:
    """Standalone PyTorch source for ``graph`` (see the module docstring); ``header`` entries (e.g. run
    directory, trial, metrics) are listed in the file's docstring next to the architecture hash.
    ``normalisation`` (default: none) and ``weights_file`` (the safetensors file beside the .py that
    ``create_model(pretrained=True)`` loads; None: no weights) go into ``PRETRAINED_CFG``."""
    if not class_name.isidentifier() or not class_name.isascii() or keyword.iskeyword(class_name) \
            or class_name in _GLOBALS:
        raise InputError(f"class_name must be a plain identifier not used by the exported file, got {class_name!r}")
    s = Structure(graph)
    writer = _Writer(s)
    init = writer.emit_init()
    features_body = writer.emit_forward(writer.sections[0], graph.input, s.features)
    head_body = writer.emit_forward(writer.sections[1], s.features, graph.output, pre_logits=True)
    shapes = s.shapes
    in_shape, out_shape, feat_shape = (_shape(shapes[n]) for n in (graph.input, graph.output, s.features))
    arch_hash = graph.canonical_hash()
    cfg = contract.pretrained_cfg(s, writer.locate, arch_hash, normalisation, weights_file)

    texts = [spec.source(writer.classes[spec.class_name]) for spec in (*BLOCKS.values(), *CELLS)
             if writer.specs.get(spec.class_name) is spec]
    named = writer.used | {name for text in texts for name in HELPERS if re.search(rf"\b{name}\(", text)}
    helpers = helper_closure(named & set(HELPERS))
    title = graph.name or class_name
    doc = [f"{title}: standalone PyTorch model exported by nas.", "",
           f"Architecture hash: {arch_hash}",
           f"Model: {class_name}, input {in_shape} -> output {out_shape}; {len(graph)} graph nodes.",
           *(["", *_render_header(header)] if header else []), "",
           "timm's contract: ``create_model(pretrained=False, **kwargs)``; inputs are raw pixels x normalised per "
           "channel as (x / max_pixel_value - mean) / std with the values in PRETRAINED_CFG."]
    out = [*docstring(doc), ""]
    out += ["import math"] if "sinusoidal_encoding" in helpers else []
    out += ["from typing import Any", "", "import torch", "from torch import nn", "", *contract.render_cfg(cfg)]
    for text, (name, value) in writer.constants.items():
        one = f"{name} = {text}"
        long = len(one) > LINE and len(value) > 1
        out += ["", *(render(Call("", tuple(lit(v) for v in value)), 0, f"{name} = ") if long else [one])]
    for name in helpers:
        out += ["", "", HELPERS[name][0].strip("\n")]
    for text in texts:
        out += ["", "", text.strip("\n")]
    out += ["", "", *contract.model_class(s, class_name, in_shape, out_shape, feat_shape, init,
                                          features_body, head_body, cfg),
            "", "", *contract.entry_point(class_name, cfg), "", "",
            'if __name__ == "__main__":',
            f"    print(create_model().eval()(torch.randn(2, {', '.join(str(d) for d in shapes[graph.input].dims)}))"
            ".shape)", ""]
    return GeneratedModel("\n".join(out), class_name, writer.key_map(), cfg)
