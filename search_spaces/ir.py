"""The architecture graph: plain data (a networkx DiGraph), validation, shape inference, JSON.

Nodes are operations (``op`` + typed ``params``, see :mod:`search_spaces.ops`); edges are data
flow. A node with several inputs combines them with its ``merge`` before applying its op:

* ``sum``    element-wise sum (residual links, NAS cells)
* ``concat`` channel concatenation in edge ``slot`` order (dense blocks, inception)
* ``gate``   highway gate: ``H*T(x) + x*(1-T(x))`` with H on slot 0, x on slot 1 and
             ``T(x) = sigmoid(conv_k(x) + b)`` (a learned transform; ``merge_params`` k and bias init)

A node's ``block`` tag (e.g. ``"residual:layer1.0"``) records which building block it came from,
and ``ArchGraph.blocks`` maps a tag to the arguments the block template was called with; both are
informational (used for readable export) and not part of the architecture's identity (hash).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import networkx as nx

from search_spaces.canonical import canonical_hash
from search_spaces.errors import (
    ArchGraphError,
    BadParameterError,
    ChannelMismatchError,
    CycleError,
    DanglingNodeError,
    GraphFormatError,
    ResolutionMismatchError,
    UnreachableNodeError,
)
from search_spaces.ops import GATE_PARAMS, MERGES, Shape, infer_shape, op_spec, resolve_params

FORMAT = "nas-arch/1"


class ArchGraph:
    """An architecture: a DAG of ops from one ``input`` node to one ``output`` node.

    Build with :meth:`add` (ids are readable strings, inputs in slot order); the last node added
    is the output unless :attr:`output` is set. ``features`` optionally names the node whose
    output ``forward_features`` returns (default: the input of the first pooling-to-vector op).
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.graph = nx.DiGraph()
        self.input: str | None = None
        self.output: str | None = None
        self.features: str | None = None
        self.blocks: dict[str, dict[str, Any]] = {}

    # ----------------------------------------------------------------------------- building
    def add(self, node: str, op: str, inputs: Iterable[str] = (), merge: str | None = None,
            merge_params: dict[str, Any] | None = None, block: str | None = None, **params: Any) -> str:
        """Add node ``node`` computing ``op(merge(inputs))``; returns the id for chaining."""
        inputs = list(inputs)
        if node in self.graph:
            raise BadParameterError(node, "a node with this id already exists; ids must be unique")
        spec = op_spec(op, node)
        resolved = resolve_params(spec.params, params, node, f"op {op!r}")
        if merge is not None and merge not in MERGES:
            raise BadParameterError(node, f"merge must be one of {MERGES}, got {merge!r}")
        if merge == "gate":
            merge_params = resolve_params(GATE_PARAMS, merge_params or {}, node, "gate merge")
        elif merge_params:
            raise BadParameterError(node, f"merge_params only apply to the gate merge, not {merge!r}")
        for src in inputs:  # check before mutating, so a failed add leaves the graph unchanged
            if src not in self.graph:
                raise DanglingNodeError(node, f"input {src!r} does not exist (add it first)")
        if len(set(inputs)) != len(inputs):
            raise BadParameterError(node, f"inputs {inputs} name a node more than once")
        if op == "input":
            if self.input is not None:
                raise BadParameterError(node, f"graph already has input node {self.input!r}")
            self.input = node
        self.graph.add_node(node, op=op, params=resolved, merge=merge, merge_params=merge_params or {},
                            block=block)
        for slot, src in enumerate(inputs):
            self.graph.add_edge(src, node, slot=slot)
        self.output = node
        return node

    def record_block(self, tag: str, **args: Any) -> str:
        """Remember the (JSON-able) arguments of block ``tag`` (``"<kind>:<name>"``); returns the tag."""
        if ":" not in tag:
            raise BadParameterError(None, f"block tag {tag!r} must read '<kind>:<name>'")
        if tag in self.blocks:
            raise BadParameterError(None, f"block {tag!r} is already recorded; block names must be unique")
        self.blocks[tag] = dict(args)
        return tag

    # ----------------------------------------------------------------------------- queries
    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def op(self, node: str) -> str:
        return self.graph.nodes[node]["op"]

    def params(self, node: str) -> dict[str, Any]:
        return self.graph.nodes[node]["params"]

    def attrs(self, node: str) -> dict[str, Any]:
        return self.graph.nodes[node]

    def inputs_of(self, node: str) -> list[str]:
        """Predecessors of ``node`` in slot order."""
        preds = self.graph.pred[node]
        return sorted(preds, key=lambda src: preds[src]["slot"])

    def topological_order(self) -> list[str]:
        """Deterministic topological order (ties broken by insertion order)."""
        position = {node: i for i, node in enumerate(self.graph.nodes)}
        return list(nx.lexicographical_topological_sort(self.graph, key=position.__getitem__))

    # ----------------------------------------------------------------------------- validation
    def validate(self) -> dict[str, Shape]:
        """Check structure and infer every node's output shape; raise a typed ArchGraphError.

        Returns {node: output Shape}. Checks: one input, acyclic, every node reachable from the
        input, every node reaches the output (no dangling branches), merges well-formed, known ops
        with valid params, and channel/resolution compatibility along every edge.
        """
        g = self.graph
        if self.input is None:
            raise ArchGraphError(None, "graph has no input node; add one with op='input'")
        if self.output is None or self.output not in g:
            raise DanglingNodeError(self.output, "output node is not set or does not exist")
        try:
            cycle = nx.find_cycle(g)
            raise CycleError(cycle[0][0], f"edges {[(u, v) for u, v, *_ in cycle]} form a cycle")
        except nx.NetworkXNoCycle:
            pass
        reachable = nx.descendants(g, self.input) | {self.input}
        for node in g:
            if node not in reachable:
                raise UnreachableNodeError(node, f"not reachable from input {self.input!r}")
        contributing = nx.ancestors(g, self.output) | {self.output}
        for node in g:
            if node not in contributing:
                raise DanglingNodeError(node, f"output never reaches the graph output {self.output!r}")
        if self.features is not None and self.features not in g:
            raise BadParameterError(self.features, "features node does not exist")

        shapes: dict[str, Shape] = {}
        for node in self.topological_order():
            attrs = g.nodes[node]
            inputs = self.inputs_of(node)
            if attrs["op"] == "input":
                if inputs:
                    raise BadParameterError(node, "the input node cannot have inputs")
                shapes[node] = infer_shape("input", Shape("vec", (1,)), attrs["params"], node)
                continue
            merged = self._merged_shape(node, [shapes[i] for i in inputs], attrs)
            shapes[node] = infer_shape(attrs["op"], merged, attrs["params"], node)
        return shapes

    def _merged_shape(self, node: str, in_shapes: list[Shape], attrs: dict[str, Any]) -> Shape:
        merge = attrs["merge"]
        slots = sorted(self.graph.pred[node][src]["slot"] for src in self.graph.pred[node])
        if slots != list(range(len(slots))):
            raise BadParameterError(node, f"input slots must be 0..{len(slots) - 1}, got {slots}")
        if len(in_shapes) == 1:
            if merge == "gate":
                raise BadParameterError(node, "gate merge needs exactly 2 inputs (H on slot 0, x on slot 1)")
            return in_shapes[0]
        if merge is None:
            raise BadParameterError(node, f"{len(in_shapes)} inputs but no merge; set merge to one of {MERGES}")
        kinds = {s.kind for s in in_shapes}
        if len(kinds) > 1:
            raise ChannelMismatchError(node, f"cannot merge inputs of different kinds {[str(s) for s in in_shapes]}")
        first = in_shapes[0]
        if merge in ("sum", "gate"):
            if merge == "gate" and len(in_shapes) != 2:
                raise BadParameterError(node, "gate merge needs exactly 2 inputs (H on slot 0, x on slot 1)")
            if merge == "gate" and first.kind == "map" and attrs["merge_params"]["kernel"] % 2 == 0:
                raise BadParameterError(node, "gate kernel must be odd on feature maps (T(x) keeps x's shape), "
                                              f"got {attrs['merge_params']['kernel']}")
            for s in in_shapes[1:]:
                if s.channels != first.channels:
                    raise ChannelMismatchError(node, f"{merge} of inputs with {[str(s) for s in in_shapes]}")
                if s != first:
                    raise ResolutionMismatchError(node, f"{merge} of inputs with {[str(s) for s in in_shapes]}")
            return first
        # concat along channels (maps) or the last dim (tokens, vectors)
        rest = [s.dims[1:] if s.kind == "map" else s.dims[:-1] for s in in_shapes]
        if any(r != rest[0] for r in rest):
            raise ResolutionMismatchError(node, f"concat of inputs with {[str(s) for s in in_shapes]}")
        total = sum(s.channels for s in in_shapes)
        dims = (total, *first.dims[1:]) if first.kind == "map" else (*first.dims[:-1], total)
        return Shape(first.kind, dims)

    def input_shape(self, node: str, shapes: dict[str, Shape]) -> Shape:
        """Shape that ``node``'s op sees: its merged inputs (its own output shape for the input node)."""
        inputs = self.inputs_of(node)
        if not inputs:
            return shapes[node]
        return self._merged_shape(node, [shapes[i] for i in inputs], self.attrs(node))

    def features_node(self) -> str:
        """Node whose output is the feature map/vector fed to the head (see class docstring)."""
        if self.features is not None:
            return self.features
        for node in self.topological_order():
            if self.op(node) in ("global_pool", "token_pool", "adaptive_pool", "flatten"):
                return self.inputs_of(node)[0]
        return self.output  # type: ignore[return-value]

    # ----------------------------------------------------------------------------- identity
    def canonical_hash(self) -> str:
        """Hex digest equal for isomorphic graphs; see :mod:`search_spaces.canonical`."""
        return canonical_hash(self)

    # ----------------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        nodes = []
        for node in self.graph.nodes:
            a = self.graph.nodes[node]
            entry: dict[str, Any] = {"id": node, "op": a["op"], "params": a["params"]}
            if a["merge"] is not None:
                entry["merge"] = a["merge"]
            if a["merge_params"]:
                entry["merge_params"] = a["merge_params"]
            if a["block"] is not None:
                entry["block"] = a["block"]
            nodes.append(entry)
        edges = [[u, v, d["slot"]] for u, v, d in self.graph.edges(data=True)]
        data = {"format": FORMAT, "name": self.name, "input": self.input, "output": self.output,
                "features": self.features, "nodes": nodes, "edges": edges}
        if self.blocks:
            data["blocks"] = self.blocks
        return data

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchGraph:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise GraphFormatError(None, f"expected format {FORMAT!r}, found {found!r}")
        try:
            arch = cls(str(data.get("name", "")))
            incoming: dict[str, list[tuple[int, str]]] = {}
            for src, dst, slot in data["edges"]:
                incoming.setdefault(dst, []).append((int(slot), src))
            order = [n["id"] for n in data["nodes"]]
            by_id = {n["id"]: n for n in data["nodes"]}
            for dst in incoming:
                if dst not in by_id:
                    raise GraphFormatError(dst, "an edge leads to this node, which is not in the node list")
            # add nodes in an order where inputs come first; cycles are added edge-wise afterwards
            deferred: list[tuple[str, str, int]] = []
            position = {node: i for i, node in enumerate(order)}
            for node in order:
                entry = by_id[node]
                ins = sorted(incoming.get(node, []))
                ready = [src for _, src in ins if position.get(src, len(order)) < position[node]]
                if len(ready) != len(ins):
                    deferred += [(src, node, slot) for slot, src in ins]
                    ready = []
                arch.add(node, entry["op"], ready, merge=entry.get("merge"),
                         merge_params=entry.get("merge_params"), block=entry.get("block"), **entry["params"])
            for src, dst, slot in deferred:
                if src not in arch.graph:
                    raise DanglingNodeError(dst, f"input {src!r} does not exist")
                arch.graph.add_edge(src, dst, slot=slot)
            arch.output = data["output"]
            arch.features = data.get("features")
            blocks = data.get("blocks", {})
            if not isinstance(blocks, dict) or not all(isinstance(v, dict) for v in blocks.values()):
                raise GraphFormatError(None, "'blocks' must map block tags to argument objects")
            arch.blocks = {str(k): dict(v) for k, v in blocks.items()}
        except ArchGraphError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise GraphFormatError(None, f"missing or malformed field ({err!r})") from None
        return arch

    @classmethod
    def from_json(cls, text: str) -> ArchGraph:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise GraphFormatError(None, f"not valid JSON: {err}") from None
        return cls.from_dict(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArchGraph) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"ArchGraph({self.name!r}, {len(self)} nodes, {self.graph.number_of_edges()} edges)"

