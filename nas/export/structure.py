"""Finding the structure of a graph for export: classes, stages, the classifier.

:class:`Structure` turns a validated :class:`ArchGraph` into the parts of a model class:

1. **Verified class instances.** For every recorded block or cell tag whose kind has a class (the
   building blocks of :data:`nas.export.templates.BLOCKS`, the cells of :data:`nas.export.cells.CELLS`),
   the spec's builder is re-run on a scratch graph with the instance's arguments (recorded, or read
   back from the nodes for cells); the instance is exported as the class only if that gives exactly
   its nodes and the class builds the same modules (compared on the meta device, submodule by
   submodule). Any other node is an inline module expression (:mod:`nas.export.exprs`).
2. **Units.** The forward in the compiled order: one unit per inline node (a merge and/or a module)
   and one per class instance.
3. **The classifier contract.** The output node is the classifier when it is an inline linear layer
   after the features node; a dropout right before it is the head's ``drop_rate`` dropout. The input
   channels are a constructor argument (``in_chans``) when every reader of the input is a conv
   (``groups == 1``) or a linear layer.
4. **Stages** (``find_steps``): a maximal run of two or more units that are instances of one block kind
   (distinct tags under one parent name: ``layer1.0``, ``layer1.1``, ...) with equal signatures (the
   same class and argument names, or inline expressions equal up to literals), each reading the
   previous one's output alone (``chain``: an ``nn.Sequential``) or the two previous outputs
   (``pairs``: an ``nn.ModuleList`` walked as ``s0, s1 = s1, cell(s0, s1)``), whose outputs nothing
   else reads; the arguments that differ become a table the loop runs over. Then **groups**: a run
   of two or more inline units of one tag reading each other in a chain becomes one ``nn.Sequential``.
5. **Helpers written out**: a conv helper (``conv_bn``, ...) that only one module outside stages would
   call, and no class needs, is written out in ``torch.nn`` (``without_rare_helpers``).

Everything is deterministic (graph insertion order breaks every tie).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch
from torch import nn

from nas.export.cells import CELLS
from nas.export.exprs import FUNCTIONAL_OPS, called, gate_expr, module_expr, skeleton
from nas.export.pysource import Expr, lit
from nas.export.templates import BLOCKS, HELPERS, BlockSpec, library_source
from search_spaces.compiler import _module_key
from search_spaces.errors import BadParameterError
from search_spaces.ir import ArchGraph
from search_spaces.layers import HighwayGate, build_op

SPECS: dict[str, list[BlockSpec]] = {}
for _spec in (*BLOCKS.values(), *CELLS):
    SPECS.setdefault(_spec.kind, []).append(_spec)
SPECS["darts_reduce_cell"] = SPECS["darts_normal_cell"]


# ----------------------------------------------------------------------------- structure checks
@functools.cache
def library(spec: BlockSpec | None = None) -> dict[str, Any]:
    """The helpers and block classes of :mod:`nas.export.templates` (and ``spec``'s class), executed."""
    namespace: dict[str, Any] = {"__name__": "nas_export_library"}
    text = library_source() + ("" if spec is None else "\n" + spec.source())
    exec(compile(text, "<nas.export.templates>", "exec"), namespace)
    return namespace


def module_structure(m: nn.Module) -> tuple:
    """What must agree for two modules to be interchangeable: class name, configuration attributes,
    parameter and buffer names and shapes (and persistence), and the same for every child."""
    plain = (bool, int, float, str, tuple, type(None))
    attrs = tuple(sorted((k, v) for k, v in vars(m).items()
                         if not k.startswith("_") and k != "training" and isinstance(v, plain)))
    params = tuple((k, None if v is None else tuple(v.shape)) for k, v in m._parameters.items())
    buffers = tuple((k, None if v is None else tuple(v.shape)) for k, v in m._buffers.items())
    children = tuple((k, None if v is None else module_structure(v)) for k, v in m._modules.items())
    return type(m).__name__, attrs, params, buffers, tuple(sorted(m._non_persistent_buffers_set)), children


def on_meta(fn: Callable[[], nn.Module]) -> nn.Module:
    """``fn()`` built on the meta device (no memory, no effect on the global RNG)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return fn()


# ----------------------------------------------------------------------------- parts
@dataclass
class Block:
    """An instance of a block or cell kind exported as its class; ``sources`` are the nodes it reads (in
    the order of its forward's arguments) and ``paths`` the submodule of each member with a module."""

    spec: BlockSpec
    tag: str
    sources: list[str]
    output: str
    members: list[str]
    kwargs: dict[str, Any]
    paths: dict[str, str]


@dataclass
class Unit:
    """One statement of a forward: an inline node (its merge and module ``expr``) or a class instance."""

    out: str
    inputs: list[str]
    block: Block | None = None
    expr: Expr | None = None
    gate: Expr | None = None
    channels: str | None = None  # the input channel count's name in ``expr`` (``in_chans``), if any

    def signature(self) -> tuple | None:
        """Equal for units a loop can build from one call (None: this unit cannot be in a stage)."""
        if self.block is not None:
            return "block", self.block.spec.class_name, len(self.block.sources), tuple(self.block.kwargs)
        if self.expr is None or self.gate is not None or len(self.inputs) != 1:
            return None
        return "inline", skeleton(self.expr)


@dataclass
class Step:
    """Units written as one attribute (or none) and one forward statement. ``kind``: ``inline``,
    ``functional`` (a tensor method, no attribute), ``merge`` (no module), ``block``, ``chain`` and
    ``pairs`` (stages), ``group``, ``head_drop`` or ``classifier``."""

    kind: str
    units: list[Unit]
    name: str = ""
    attr: str = ""
    gate_attr: str = ""

    @property
    def out(self) -> str:
        return self.units[-1].out

    @property
    def inputs(self) -> list[str]:
        return self.units[0].inputs


class Structure:
    """The analysed graph (see the module docstring). Raises the compiler's errors for graphs it refuses."""

    def __init__(self, graph: ArchGraph) -> None:
        self.graph = graph
        self.shapes = graph.validate()
        self.features = graph.features_node()
        ancestors = nx.ancestors(graph.graph, self.features) | {self.features}
        topo = graph.topological_order()
        self.order = [n for n in topo if n in ancestors] + [n for n in topo if n not in ancestors]
        self.split = len(ancestors)
        self.position = index = {node: i for i, node in enumerate(self.order)}
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
                self.modules[node] = on_meta(lambda a=attrs, s=shape: build_op(a["op"], s, a["params"]))
            if attrs["merge"] == "gate" and len(graph.inputs_of(node)) > 1:
                mp = attrs["merge_params"]
                self.gates[node] = on_meta(lambda s=shape, mp=mp: HighwayGate(s, mp["kernel"], mp["bias"]))
        verified = [b for b in (self._verify(tag) for tag in graph.blocks | _unrecorded(graph)) if b is not None]
        chosen: dict[str, BlockSpec] = {}  # one class per name in a file (e.g. a single kind of Cell)
        self.blocks = [b for b in verified if chosen.setdefault(b.spec.class_name, b.spec) is b.spec]
        self.block_of = {m: b for b in self.blocks for m in b.members}
        self.alias: dict[str, str] = {}
        self.in_chans = self._channels_are_free()
        self.units = self._units()

    # ---- class instances
    def _verify(self, tag: str) -> Block | None:
        kind, _, name = tag.partition(":")
        members = [n for n in self.order if self.graph.attrs(n)["block"] == tag and n.startswith(name + ".")]
        for spec in SPECS.get(kind, ()):
            block = self._verify_spec(spec, tag, name, members)
            if block is not None:
                return block
        return None

    def _verify_spec(self, spec: BlockSpec, tag: str, name: str, members: list[str]) -> Block | None:
        """The instance ``tag`` as ``spec``'s class if it rebuilds its nodes and modules exactly, else None."""
        rebuilt = self._rebuild(spec, tag, name, members)
        if rebuilt is None:
            return None
        args, sources, output = rebuilt
        paths = {n: spec.path(n[len(name) + 1:], args) for n in members
                 if n in self.modules or n in self.gates}
        expected: dict[str, nn.Module] = {}
        for n, path in paths.items():
            for module in (self.modules.get(n), self.gates.get(n)):
                if module is not None:
                    if path in expected:
                        return None
                    expected[path] = module
        kwargs = self._class_fits(spec, args, sources, expected)
        return None if kwargs is None else Block(spec, tag, sources, output, members, kwargs, paths)

    def _rebuild(self, spec: BlockSpec, tag: str, name: str, members: list[str]
                 ) -> tuple[dict[str, Any], list[str], str] | None:
        """(arguments, sources, output) when ``spec``'s builder, re-run on a scratch graph with the arguments
        it reads from the instance, gives exactly the instance's nodes (and nothing outside reads inside)."""
        g, member_set = self.graph, set(members)
        try:
            args = spec.args(g, tag, name, self.shapes)
            sources = spec.sources(g, name, member_set) if members else None
        except (KeyError, IndexError, TypeError, ValueError):  # nodes that are not the spec's
            return None
        if args is None or not sources:
            return None
        scratch = ArchGraph()
        scratch.add(sources[0], "input", shape=list(self.shapes[sources[0]].dims))
        for s in dict.fromkeys(sources[1:]):
            if s != sources[0]:
                scratch.add(s, "identity", [sources[0]])  # never validated: only the members are compared
        try:
            output = spec.template(scratch, sources, name, **args)
        except Exception:  # the arguments do not rebuild this block
            return None
        if set(scratch.graph) - set(sources) != member_set or output not in member_set:
            return None
        for n in members:
            if (scratch.attrs(n) != g.attrs(n) or scratch.inputs_of(n) != g.inputs_of(n)
                    or (n != output and (n in (self.features, g.output)
                                         or not set(g.graph.succ[n]) <= member_set))):
                return None
        return args, sources, output

    def _class_fits(self, spec: BlockSpec, args: dict[str, Any], sources: list[str],
                    expected: dict[str, nn.Module]) -> dict[str, Any] | None:
        """The class's constructor arguments when, built on the meta device, it has exactly the ``expected``
        modules at their paths (and no other parameters or buffers), else None."""
        cls = library(spec)[spec.class_name]
        order = list(inspect.signature(cls).parameters)
        try:
            kwargs = spec.ctor(args, [self.shapes[s] for s in sources])
            if not set(kwargs) <= set(order):
                return None
            kwargs = {k: kwargs[k] for k in order if k in kwargs}
            for v in kwargs.values():
                lit(v)
            instance = on_meta(lambda: cls(**kwargs))
            own = {k: tuple(v.shape) for k, v in instance.state_dict().items()}
            mapped = {f"{p}.{k}": tuple(v.shape) for p, m in expected.items() for k, v in m.state_dict().items()}
            if own != mapped or any(module_structure(instance.get_submodule(p)) != module_structure(m)
                                    for p, m in expected.items()):
                return None
        except Exception:  # e.g. arguments of the wrong type, a path the class does not have
            return None
        return kwargs

    # ---- units
    def resolve(self, node: str) -> str:
        while node in self.alias:
            node = self.alias[node]
        return node

    def _channels_are_free(self) -> bool:
        """True when the input's channel count can be a constructor argument: every node reading the input
        (through identities) is an inline conv with groups 1, or a linear layer."""
        g = self.graph
        readers: list[str] = []
        todo = [g.input]
        while todo:
            for n in g.graph.succ[todo.pop()]:
                attrs = g.attrs(n)
                if attrs["op"] == "identity" and len(g.inputs_of(n)) == 1:
                    todo.append(n)
                else:
                    readers.append(n)
        ok = [(g.op(n) == "conv" and g.params(n)["groups"] == 1) or g.op(n) == "linear" for n in readers]
        return all(ok) and not any(
            n in self.block_of or len(g.inputs_of(n)) != 1 for n in readers)

    def _units(self) -> list[Unit]:
        g, units = self.graph, []
        for node in self.order:
            attrs, ins = g.attrs(node), g.inputs_of(node)
            block = self.block_of.get(node)
            if block is not None:
                if node == block.output:
                    units.append(Unit(node, [self.resolve(s) for s in block.sources], block))
                continue
            if attrs["op"] == "input":
                continue
            if attrs["op"] == "identity" and len(ins) == 1:
                self.alias[node] = self.resolve(ins[0])
                continue
            ins = [self.resolve(s) for s in ins]
            free = self.in_chans and ins == [g.input]
            expr = module_expr(attrs["op"], self.in_shapes[node], attrs["params"], "in_chans" if free else None)
            gate = gate_expr(self.in_shapes[node], attrs["merge_params"]) if node in self.gates else None
            units.append(Unit(node, ins, expr=expr, gate=gate, channels="in_chans" if free else None))
        return units

    def without_rare_helpers(self, steps: list[Step]) -> None:
        """Write out the conv helpers that only one expression would use, when that expression stands alone
        or in a group (whose nn.Sequential takes its layers in flat) and no class needs the helper."""
        texts = [spec.source([b.kwargs for b in self.blocks if b.spec is spec])
                 for spec in dict.fromkeys(b.spec for b in self.blocks)]
        needed = {h for h in HELPERS for text in texts if re.search(rf"\b{h}\(", text)}
        readers: dict[str, list[tuple[Step, Unit]]] = {}
        for step in steps:
            for unit in step.units:
                for h in called(unit.expr) & set(HELPERS) if unit.expr is not None else ():
                    readers.setdefault(h, []).append((step, unit))
        for h, found in readers.items():
            if len(found) == 1 and found[0][0].kind in ("inline", "group") and h not in needed:
                unit = found[0][1]
                attrs = self.graph.attrs(unit.out)
                unit.expr = module_expr(attrs["op"], self.in_shapes[unit.out], attrs["params"], unit.channels,
                                        helpers=False)

    # ---- the head
    def classifier(self) -> Unit | None:
        """The inline linear layer producing the output after the features node, if there is one."""
        g, last = self.graph, self.units[-1]
        if (last.out != g.output or last.block is not None or g.op(last.out) != "linear" or last.gate is not None
                or len(last.inputs) != 1 or last.out == self.features or self.index(last.out) < self.split):
            return None
        return last

    def index(self, node: str) -> int:
        """Position of ``node`` in the compiled order."""
        return self.position[node]

    def head_dropout(self) -> Unit | None:
        """The inline dropout right before the classifier, read by nothing else."""
        classifier = self.classifier()
        if classifier is None or len(self.units) < 2:
            return None
        drop, g = self.units[-2], self.graph
        ok = (drop.out == classifier.inputs[0] and drop.block is None and g.op(drop.out) == "dropout"
              and len(drop.inputs) == 1 and drop.gate is None and drop.out != self.features
              and self.index(drop.out) >= self.split and set(g.graph.succ[drop.out]) == {classifier.out})
        return drop if ok else None

    # ---- stages and groups
    def find_steps(self, units: list[Unit], result: str) -> list[Step]:
        """``units`` (one forward section, computing ``result``) as steps: stages, groups, single units."""
        uses: dict[str, set[int]] = {}
        for i, unit in enumerate(units):
            for s in unit.inputs:
                uses.setdefault(s, set()).add(i)
        uses.setdefault(self.resolve(result), set()).add(len(units))
        special = {u.out for u in (self.classifier(), self.head_dropout()) if u is not None}
        steps: list[Step] = []
        i = 0
        while i < len(units):
            run = self._stage(units, i, uses, special) or self._group(units, i, uses, special)
            if run is not None:
                steps.append(run)
                i += len(run.units)
                continue
            steps.append(self._single(units[i], special))
            i += 1
        return steps

    def _tag(self, unit: Unit) -> str | None:
        return unit.block.tag if unit.block is not None else self.graph.attrs(unit.out)["block"]

    def _stage(self, units: list[Unit], i: int, uses: dict[str, set[int]], special: set[str]) -> Step | None:
        first = units[i]
        sig = first.signature()
        tag = self._tag(first)
        if sig is None or tag is None or first.out in special:
            return None
        pairs = sig[0] == "block" and sig[2] == 2
        if sig[0] == "block" and sig[2] > 2:
            return None
        tags = {tag}
        j = i + 1
        while j < len(units):
            u, prev = units[j], units[j - 1]
            t = self._tag(u)
            if u.signature() != sig or t is None or t in tags or _parent(t) != _parent(tag):
                break
            if u.block is None and t.partition(":")[0] != tag.partition(":")[0]:  # inline: one block kind
                break
            if u.out in special:
                break
            if pairs:
                before = units[j - 2].out if j - 2 >= i else first.inputs[1]
                if u.inputs != [before, prev.out]:
                    break
            elif u.inputs != [prev.out]:
                break
            tags.add(t)
            j += 1
        # members' outputs (but the last) are read inside the run only
        while j - i >= 2:
            inside = set(range(i, j))
            if all(uses.get(units[k].out, set()) <= inside for k in range(i, j - 1)):
                break
            j -= 1
        if j - i < 2:
            return None
        run = units[i:j]
        names = [u.block.tag.partition(":")[2] if u.block is not None else u.out for u in run]
        return Step("pairs" if pairs else "chain", run, common_name(names, tag.partition(":")[2], plural=True))

    def _group(self, units: list[Unit], i: int, uses: dict[str, set[int]], special: set[str]) -> Step | None:
        def groupable(u: Unit) -> bool:
            return (u.block is None and u.expr is not None and u.gate is None and len(u.inputs) == 1
                    and u.out not in special)

        tag = self._tag(units[i])
        if tag is None or not groupable(units[i]):
            return None
        j = i + 1
        while (j < len(units) and groupable(units[j]) and self._tag(units[j]) == tag
               and units[j].inputs == [units[j - 1].out] and uses.get(units[j - 1].out) == {j}):
            j += 1
        if j - i < 2:
            return None
        return Step("group", units[i:j], common_name([u.out for u in units[i:j]], tag.partition(":")[2]))

    def _single(self, unit: Unit, special: set[str]) -> Step:
        g = self.graph
        if unit.block is not None:
            return Step("block", [unit], unit.block.tag.partition(":")[2])
        if unit.out in special:
            return Step("classifier" if unit.out == g.output else "head_drop", [unit], unit.out)
        if unit.expr is None:
            return Step("merge", [unit])
        if g.op(unit.out) in FUNCTIONAL_OPS and len(unit.inputs) == 1 and unit.gate is None:
            return Step("functional", [unit])
        return Step("inline", [unit], unit.out)


def _parent(tag: str) -> str:
    """The stage a block instance belongs to by name: ``residual:layer1.0`` -> ``layer1`` ('' for none)."""
    return tag.partition(":")[2].rpartition(".")[0]


def _unrecorded(graph: ArchGraph) -> dict[str, None]:
    """Block tags of nodes that were not recorded with arguments (cells, NAS-Bench-201's reductions)."""
    tags = (graph.attrs(n)["block"] for n in graph.graph)
    return {t: None for t in tags if t is not None and t not in graph.blocks}


def common_name(ids: list[str], fallback: str, plural: bool = False) -> str:
    """A name for what ``ids`` have in common: their shared leading dotted parts (``layer1.0``,
    ``layer1.1`` -> ``layer1``), else their common prefix (``inception4a``, ``inception4b`` ->
    ``inception4``; ``cell0``, ``cell1`` -> ``cells`` with ``plural``), else ``fallback``."""
    parts = [i.split(".") for i in ids]
    shared = []
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        shared.append(column[0])
    if shared and len(shared) < min(len(p) for p in parts):
        return ".".join(shared)
    first, last = min(ids), max(ids)  # the common prefix of all is that of the extremes
    size = next((k for k, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last)))
    prefix = re.sub(r"[^0-9A-Za-z]+$", "", first[:size])
    if not prefix:
        return fallback
    if plural and all(re.fullmatch(r"\d+", i[len(prefix):]) for i in ids):
        return prefix + "s"
    return prefix
