"""Hypothesis strategies for random valid architecture graphs, and a naive reference evaluator.

``valid_graphs()`` builds a random DAG node by node, keeping shapes consistent: feature-map ops
(strided/padded/dilated/grouped convs, sep convs, factorized reduce, ceil-mode pools, strided
zero, attention over maps), a switch to tokens (``to_tokens``) with token ops, and sum / concat /
gate merges over nodes of compatible shapes. Every sink is then pooled to a vector and merged, so
every node reaches the output. Shapes are tracked with the library's own shape rules while
building; the tests check them against torch.

Node ids are plain identifiers (``in``, ``n3``, ``c0_fc``), so a compiled module's keys equal them.
"""

from __future__ import annotations

import random
from typing import Any

import networkx as nx
import torch
from hypothesis import strategies as st

from search_spaces.compiler import GraphModule
from search_spaces.errors import ArchGraphError
from search_spaces.ir import ArchGraph
from search_spaces.ops import ACTIVATIONS, CONV_ORDERS, OPS, POSITIONAL, Shape, infer_shape, resolve_params

MAP_OPS = ("conv", "conv", "sep_conv", "factorized_reduce", "pool", "pool", "zero", "identity", "act", "norm",
           "dropout", "mhsa", "to_tokens")
TOKEN_OPS = ("mhsa", "linear", "norm", "act", "dropout", "identity", "zero")
MAX_CHANNELS = 24


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _op_params(draw: st.DrawFn, op: str, shape: Shape) -> dict[str, Any]:
    """Random parameters for ``op`` on input ``shape`` (may still not fit: the caller checks)."""
    c = shape.channels
    if op == "conv":
        groups = draw(st.sampled_from(_divisors(c)))
        return {"out": groups * draw(st.integers(1, max(1, 8 // groups))), "groups": groups,
                "kernel": draw(st.integers(1, 4)), "stride": draw(st.integers(1, 2)),
                "dilation": draw(st.integers(1, 2)), "padding": draw(st.sampled_from([-1, -1, 0, 1, 2])),
                "order": draw(st.sampled_from(CONV_ORDERS)), "bias": draw(st.booleans()),
                "act": draw(st.sampled_from(ACTIVATIONS))}
    if op == "sep_conv":
        return {"out": draw(st.integers(1, 8)), "kernel": draw(st.integers(1, 4)), "stride": draw(st.integers(1, 2)),
                "dilation": draw(st.integers(1, 2)), "repeats": draw(st.integers(1, 2))}
    if op == "factorized_reduce":
        return {"out": 2 * draw(st.integers(1, 4))}
    if op == "pool":
        kernel = draw(st.integers(1, 3))
        return {"kind": draw(st.sampled_from(["max", "avg"])), "kernel": kernel, "stride": draw(st.integers(0, 2)),
                "padding": draw(st.integers(0, kernel // 2)), "ceil_mode": draw(st.booleans()),
                "count_include_pad": draw(st.booleans())}
    if op == "zero":
        return {"stride": draw(st.integers(1, 2)) if shape.kind == "map" else 1}
    if op == "norm":
        return {"kind": "batch" if shape.kind == "map" else "layer"}
    if op == "act":
        return {"fn": draw(st.sampled_from(ACTIVATIONS))}
    if op == "dropout":
        return {"p": draw(st.sampled_from([0.0, 0.25]))}
    if op == "mhsa":
        return {"heads": draw(st.sampled_from([d for d in _divisors(c) if d <= 4])), "qkv_bias": draw(st.booleans()),
                "pos": draw(st.sampled_from(POSITIONAL))}
    if op == "to_tokens":
        return {"cls_token": draw(st.booleans()), "pos": draw(st.sampled_from(POSITIONAL))}
    if op == "linear":
        return {"out": draw(st.integers(1, 8)), "bias": draw(st.booleans())}
    return {}


def _merge_key(shape: Shape, merge: str) -> tuple:
    """Nodes with equal keys can be merged: sum/gate need equal shapes, concat all but the channels."""
    if merge in ("sum", "gate"):
        return (shape.kind, shape.dims)
    return (shape.kind, shape.dims[1:] if shape.kind == "map" else shape.dims[:-1])


def _merged(shapes: list[Shape], merge: str | None) -> Shape:
    if merge != "concat":
        return shapes[0]
    total = sum(s.channels for s in shapes)
    first = shapes[0]
    return Shape(first.kind, (total, *first.dims[1:]) if first.kind == "map" else (*first.dims[:-1], total))


def _draw_inputs(draw: st.DrawFn, shapes: dict[str, Shape], body: list[str]) -> tuple[list[str], str | None, dict]:
    mode = draw(st.sampled_from(["single", "single", "sum", "concat", "gate"]))
    if mode != "single":
        groups: dict[tuple, list[str]] = {}
        for node in body:
            groups.setdefault(_merge_key(shapes[node], mode), []).append(node)
        candidates = [members for _, members in sorted(groups.items()) if len(members) >= 2]
        if candidates:
            members = draw(st.sampled_from(candidates))
            count = 2 if mode == "gate" else draw(st.integers(2, min(3, len(members))))
            chosen = draw(st.permutations(members))[:count]
            merged = _merged([shapes[n] for n in chosen], mode)
            if merged.channels <= MAX_CHANNELS:
                merge_params = {}
                if mode == "gate":
                    kernel = draw(st.sampled_from([1, 3])) if merged.kind == "map" else draw(st.integers(1, 2))
                    merge_params = {"kernel": kernel, "bias": draw(st.sampled_from([-1.0, 0.5]))}
                return chosen, mode, merge_params
    return [draw(st.sampled_from(body))], None, {}


@st.composite
def valid_graphs(draw: st.DrawFn, max_body: int = 6) -> ArchGraph:
    """A random valid ArchGraph with a map input, a body of ``1..max_body`` nodes and a vector output."""
    g = ArchGraph("random")
    sizes = st.sampled_from([4, 6, 8, 3, 5, 7])  # mostly even, so factorized_reduce fits
    in_shape = Shape("map", (draw(st.sampled_from([2, 3, 4, 6])), draw(sizes), draw(sizes)))
    g.add("in", "input", shape=list(in_shape.dims))
    shapes: dict[str, Shape] = {"in": in_shape}
    body = ["in"]
    for i in range(draw(st.integers(1, max_body))):
        node = f"n{i}"
        inputs, merge, merge_params = _draw_inputs(draw, shapes, body)
        merged = _merged([shapes[n] for n in inputs], merge)
        op = draw(st.sampled_from(MAP_OPS if merged.kind == "map" else TOKEN_OPS))
        params = _op_params(draw, op, merged)
        try:
            shape = infer_shape(op, merged, resolve_params(OPS[op].params, params, node, op), node)
        except ArchGraphError:  # the drawn parameters do not fit this input (too small a map, ...)
            op, params, shape = "identity", {}, merged
        g.add(node, op, inputs, merge=merge, merge_params=merge_params or None, **params)
        shapes[node] = shape
        body.append(node)

    sinks = [n for n in body if g.graph.out_degree(n) == 0]
    num_classes = draw(st.integers(1, 5))

    def pool(sink: str, name: str) -> str:
        if shapes[sink].kind == "map":
            return g.add(name, "global_pool", [sink], kind=draw(st.sampled_from(["avg", "max"])))
        return g.add(name, "token_pool", [sink], kind=draw(st.sampled_from(["cls", "mean"])))

    if len(sinks) == 1:  # default features node: the input of the pooling op
        h = pool(sinks[0], "pool")
    else:  # each sink pooled and projected, then merged; that merge is the features node
        width = draw(st.integers(2, 6))
        heads = [g.add(f"c{j}_fc", "linear", [pool(s, f"c{j}_pool")], out=width) for j, s in enumerate(sinks)]
        h = g.add("merge", "identity", heads, merge=draw(st.sampled_from(["sum", "concat"])))
        g.features = h
    for j, op in enumerate(draw(st.lists(st.sampled_from(["norm", "norm_layer", "act", "dropout"]), max_size=2))):
        if op.startswith("norm"):  # batch or layer norm on a vector
            h = g.add(f"v{j}", "norm", [h], kind="layer" if op == "norm_layer" else "batch")
        else:
            h = g.add(f"v{j}", op, [h], **_op_params(draw, op, Shape("vec", (4,))))
    g.add("out", "linear", [h], out=num_classes)
    return g


def reference_forward(arch: ArchGraph, module: GraphModule, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every node's output, evaluated naively in topological order with the compiled node modules
    (independent of the compiler's plan, merge codes and buffer release). Needs plain node ids."""
    values: dict[str, torch.Tensor] = {}
    for node in arch.topological_order():
        attrs = arch.attrs(node)
        ins = [values[src] for src in arch.inputs_of(node)]
        if not ins:
            h = x
        elif len(ins) == 1:
            h = ins[0]
        elif attrs["merge"] == "sum":
            h = ins[0]
            for t in ins[1:]:
                h = h + t
        elif attrs["merge"] == "concat":
            h = torch.cat(ins, dim=1 if ins[0].dim() == 4 else -1)
        else:
            h = module.gates[node](ins[0], ins[1])
        values[node] = h if attrs["op"] in ("input", "identity") else module.nodes[node](h)
    return values


def relabelled(arch: ArchGraph, rng: random.Random) -> ArchGraph:
    """The same architecture under fresh random node ids, rebuilt from shuffled node and edge lists."""
    names = [f"v{i}_{rng.randrange(10**6)}" for i in range(len(arch))]
    rng.shuffle(names)
    mapping = dict(zip(arch.graph.nodes, names, strict=True))
    graph = nx.relabel_nodes(arch.graph, mapping)
    data = arch.to_dict()
    by_id = {entry["id"]: entry for entry in data["nodes"]}
    nodes = [{**by_id[old], "id": mapping[old]} for old in arch.graph.nodes]
    edges = [[u, v, d["slot"]] for u, v, d in graph.edges(data=True)]
    rng.shuffle(nodes)
    rng.shuffle(edges)
    data.update(nodes=nodes, edges=edges, input=mapping[arch.input], output=mapping[arch.output],
                features=mapping[arch.features] if arch.features is not None else None)
    return ArchGraph.from_dict(data)
