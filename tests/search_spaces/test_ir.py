"""ArchGraph: building, validation with typed errors naming the node, queries, JSON."""

from __future__ import annotations

import json
import random
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import valid_graphs

from search_spaces.errors import (
    ArchGraphError,
    BadParameterError,
    ChannelMismatchError,
    CycleError,
    DanglingNodeError,
    GraphFormatError,
    ResolutionMismatchError,
    ShapeMismatchError,
    UnknownOpError,
    UnreachableNodeError,
)
from search_spaces.ir import FORMAT, ArchGraph
from search_spaces.ops import Shape


def chain(shape: tuple[int, ...] = (4, 8, 8)) -> ArchGraph:
    """in -> a (conv 4) -> b (conv 4)."""
    g = ArchGraph("chain")
    g.add("in", "input", shape=list(shape))
    g.add("a", "conv", ["in"], out=4)
    g.add("b", "conv", ["a"], out=4)
    return g


def raises_at(error: type[ArchGraphError], node: str | None, fn: Any, *args: Any, **kwargs: Any) -> ArchGraphError:
    with pytest.raises(error) as info:
        fn(*args, **kwargs)
    assert info.value.node == node, f"{error.__name__} names {info.value.node!r}, expected {node!r}"
    if node is not None:
        assert repr(node) in str(info.value)
    return info.value


# ------------------------------------------------------------------------------- structure
def test_valid_chain_shapes() -> None:
    shapes = chain().validate()
    assert shapes == {"in": Shape("map", (4, 8, 8)), "a": Shape("map", (4, 8, 8)), "b": Shape("map", (4, 8, 8))}


def test_cycle_is_rejected() -> None:
    g = chain()
    g.add("c", "conv", ["b"], out=4)
    g.graph.add_edge("c", "a", slot=1)  # back edge a -> b -> c -> a
    with pytest.raises(CycleError) as info:
        g.validate()
    assert info.value.node in {"a", "b", "c"}
    assert repr(info.value.node) in str(info.value)


def test_self_loop_is_a_cycle() -> None:
    g = chain()
    g.graph.add_edge("b", "b", slot=1)
    raises_at(CycleError, "b", g.validate)


def test_cycle_from_json() -> None:
    data = chain().to_dict()
    data["edges"].append(["b", "a", 1])
    g = ArchGraph.from_dict(data)
    with pytest.raises(CycleError) as info:
        g.validate()
    assert info.value.node in {"a", "b"}


def test_unreachable_node() -> None:
    g = chain()
    g.add("orphan", "conv", [], out=4)
    g.add("sum", "identity", ["b", "orphan"], merge="sum")
    raises_at(UnreachableNodeError, "orphan", g.validate)


def test_dangling_node() -> None:
    g = chain()
    g.add("side", "act", ["a"])
    g.add("out", "conv", ["b"], out=2)
    raises_at(DanglingNodeError, "side", g.validate)


def test_output_must_exist() -> None:
    g = chain()
    g.output = "ghost"
    raises_at(DanglingNodeError, "ghost", g.validate)


def test_no_input_node() -> None:
    g = ArchGraph()
    raises_at(ArchGraphError, None, g.validate)


def test_features_must_exist() -> None:
    g = chain()
    g.features = "ghost"
    raises_at(BadParameterError, "ghost", g.validate)


def test_add_rejects_bad_structure_and_leaves_graph_unchanged() -> None:
    g = chain()
    raises_at(DanglingNodeError, "c", g.add, "c", "conv", ["nope"], out=4)
    assert "c" not in g.graph and g.output == "b"
    raises_at(BadParameterError, "c", g.add, "c", "identity", ["a", "a"], merge="sum")
    assert "c" not in g.graph
    raises_at(BadParameterError, "a", g.add, "a", "conv", ["b"], out=4)  # duplicate id
    raises_at(BadParameterError, "in2", g.add, "in2", "input", shape=[4, 8, 8])  # second input
    assert g.input == "in" and len(g) == 3
    g.add("c", "conv", ["b"], out=4)  # the failed adds did not reserve the id
    assert g.validate()["c"] == Shape("map", (4, 8, 8))


# ------------------------------------------------------------------------------- merges
def test_several_inputs_need_a_merge() -> None:
    g = chain()
    g.add("m", "identity", ["a", "b"])
    raises_at(BadParameterError, "m", g.validate)


def test_gate_needs_exactly_two_inputs() -> None:
    g = chain()
    g.add("gate1", "identity", ["b"], merge="gate")
    raises_at(BadParameterError, "gate1", g.validate)
    g = chain()
    g.add("gate3", "identity", ["in", "a", "b"], merge="gate")
    raises_at(BadParameterError, "gate3", g.validate)
    g = chain()
    g.add("gate2", "identity", ["a", "b"], merge="gate")
    assert g.validate()["gate2"] == Shape("map", (4, 8, 8))


def test_gate_kernel_must_be_odd_on_maps_but_not_on_vectors() -> None:
    g = chain()
    g.add("gate", "identity", ["a", "b"], merge="gate", merge_params={"kernel": 2})
    raises_at(BadParameterError, "gate", g.validate)
    g = ArchGraph()
    g.add("in", "input", shape=[6])
    g.add("h", "linear", ["in"], out=6)
    g.add("gate", "identity", ["h", "in"], merge="gate", merge_params={"kernel": 2})
    assert g.validate()["gate"] == Shape("vec", (6,))


def test_merge_params_and_merge_kind_are_checked() -> None:
    g = chain()
    raises_at(BadParameterError, "m", g.add, "m", "identity", ["a", "b"], merge="sum", merge_params={"kernel": 3})
    raises_at(BadParameterError, "m", g.add, "m", "identity", ["a", "b"], merge="max")
    raises_at(BadParameterError, "m", g.add, "m", "identity", ["a", "b"], merge="gate",
              merge_params={"kernel": 0})
    raises_at(BadParameterError, "m", g.add, "m", "identity", ["a", "b"], merge="gate",
              merge_params={"width": 3})


def test_sum_channel_mismatch() -> None:
    g = chain()
    g.add("c", "conv", ["in"], out=6)
    g.add("sum", "identity", ["b", "c"], merge="sum")
    err = raises_at(ChannelMismatchError, "sum", g.validate)
    assert isinstance(err, ShapeMismatchError)


def test_gate_channel_mismatch() -> None:
    g = chain()
    g.add("c", "conv", ["in"], out=6)
    g.add("gate", "identity", ["c", "b"], merge="gate")
    raises_at(ChannelMismatchError, "gate", g.validate)


@pytest.mark.parametrize("merge", ["sum", "concat", "gate"])
def test_resolution_mismatch_on_merge(merge: str) -> None:
    g = chain()
    g.add("c", "conv", ["in"], out=4, stride=2)
    g.add("m", "identity", ["b", "c"], merge=merge)
    raises_at(ResolutionMismatchError, "m", g.validate)


def test_concat_of_different_kinds() -> None:
    g = chain()
    g.add("t", "to_tokens", ["b"])
    g.add("m", "identity", ["a", "t"], merge="concat")
    raises_at(ChannelMismatchError, "m", g.validate)


def test_concat_adds_channels_and_token_concat_needs_equal_length() -> None:
    g = chain()
    g.add("c", "conv", ["in"], out=6)
    g.add("m", "identity", ["b", "c", "a"], merge="concat")
    assert g.validate()["m"] == Shape("map", (14, 8, 8))
    g = ArchGraph()
    g.add("in", "input", shape=[5, 4])
    g.add("x", "linear", ["in"], out=3)
    g.add("m", "identity", ["in", "x"], merge="concat")
    assert g.validate()["m"] == Shape("tokens", (5, 7))
    h = ArchGraph()
    h.add("in", "input", shape=[4, 4, 4])
    h.add("t1", "to_tokens", ["in"], cls_token=True)
    h.add("t0", "to_tokens", ["in"], cls_token=False)
    h.add("m", "identity", ["t1", "t0"], merge="concat")
    raises_at(ResolutionMismatchError, "m", h.validate)


def test_slots_must_be_contiguous() -> None:
    g = chain()
    g.add("m", "identity", ["a", "b"], merge="concat")
    g.graph.edges["b", "m"]["slot"] = 2
    raises_at(BadParameterError, "m", g.validate)


# ------------------------------------------------------------------------------- ops and params
def test_grouped_conv_channel_mismatch() -> None:
    g = ArchGraph()
    g.add("in", "input", shape=[6, 8, 8])
    g.add("conv", "conv", ["in"], out=8, groups=4)  # 4 does not divide 6
    raises_at(ChannelMismatchError, "conv", g.validate)
    g = ArchGraph()
    g.add("in", "input", shape=[8, 8, 8])
    g.add("conv", "conv", ["in"], out=6, groups=4)  # 4 does not divide 6
    raises_at(ChannelMismatchError, "conv", g.validate)


@pytest.mark.parametrize(("op", "params"), [
    ("conv", {"out": 4, "kernel": 7, "padding": 0}),
    ("conv", {"out": 4, "kernel": 3, "dilation": 3, "padding": 0}),
    ("sep_conv", {"out": 4, "kernel": 2, "dilation": 3}),
    ("pool", {"kernel": 3, "stride": 1, "padding": 0}),
    ("pool", {"kind": "avg", "kernel": 3, "stride": 1, "padding": 0, "ceil_mode": True}),
])
def test_op_that_does_not_fit(op: str, params: dict[str, Any]) -> None:
    g = ArchGraph()
    g.add("in", "input", shape=[4, 2, 2])
    g.add("x", op, ["in"], **params)
    raises_at(ResolutionMismatchError, "x", g.validate)


def test_factorized_reduce_needs_even_resolution() -> None:
    g = ArchGraph()
    g.add("in", "input", shape=[4, 5, 6])
    g.add("fr", "factorized_reduce", ["in"], out=4)
    raises_at(ResolutionMismatchError, "fr", g.validate)


def test_op_on_wrong_tensor_kind() -> None:
    g = chain()
    g.add("fc", "linear", ["b"], out=3)
    raises_at(ChannelMismatchError, "fc", g.validate)
    g = chain()
    g.add("ln", "norm", ["b"], kind="layer")
    raises_at(BadParameterError, "ln", g.validate)
    g = ArchGraph()
    g.add("in", "input", shape=[4, 6])
    g.add("bn", "norm", ["in"], kind="batch")
    raises_at(BadParameterError, "bn", g.validate)
    g = ArchGraph()
    g.add("in", "input", shape=[4, 6])
    g.add("attn", "mhsa", ["in"], heads=4)  # 4 does not divide 6
    raises_at(ChannelMismatchError, "attn", g.validate)


def test_unknown_op() -> None:
    g = chain()
    raises_at(UnknownOpError, "x", g.add, "x", "warp_drive", ["b"])
    g.graph.nodes["b"]["op"] = "warp_drive"  # a graph edited behind the builder's back
    raises_at(UnknownOpError, "b", g.validate)


@pytest.mark.parametrize("params", [
    {"out": "4"},  # wrong type
    {"out": 4.0},
    {"out": True},  # bool is not an int here
    {},  # required parameter missing
    {"out": 0},  # below the bound
    {"out": 4, "kernel": 0},
    {"out": 4, "padding": -2},
    {"out": 4, "order": "conv-relu-bn"},  # not a choice
    {"out": 4, "act": "swish"},
    {"out": 4, "bn_eps": float("nan")},
    {"out": 4, "bn_eps": True},
    {"out": 4, "stride_x": 2},  # unknown name
])
def test_bad_conv_parameters(params: dict[str, Any]) -> None:
    g = chain()
    raises_at(BadParameterError, "x", g.add, "x", "conv", ["b"], **params)
    assert "x" not in g.graph


@pytest.mark.parametrize(("op", "params"), [
    ("dropout", {"p": 1.5}),
    ("dropout", {"p": -0.1}),
    ("pool", {"kind": "median"}),
    ("sep_conv", {"out": 4, "repeats": 3}),
    ("factorized_reduce", {"out": 1}),
    ("mhsa", {"heads": 0}),
    ("to_tokens", {"pos": "rotary"}),
    ("input", {"shape": [4, "8", 8]}),
    ("input", {"shape": 4}),
])
def test_bad_parameters_of_other_ops(op: str, params: dict[str, Any]) -> None:
    g = ArchGraph()
    raises_at(BadParameterError, "x", g.add, "x", op, **params)


def test_param_values_are_normalised() -> None:
    g = ArchGraph()
    g.add("in", "input", shape=(4, 8, 8))
    g.add("d", "dropout", ["in"], p=1)
    assert g.params("in") == {"shape": [4, 8, 8]}
    assert g.params("d") == {"p": 1.0} and isinstance(g.params("d")["p"], float)
    assert g.validate()["d"] == Shape("map", (4, 8, 8))


@pytest.mark.parametrize("shape", [[4, 8, 8, 8], [], [0, 4], [4, -1, 2]])
def test_bad_input_shape_is_a_typed_error(shape: list[int]) -> None:
    g = ArchGraph()
    g.add("in", "input", shape=shape)
    g.add("x", "identity", ["in"])
    raises_at(BadParameterError, "in", g.validate)


def test_pool_padding_at_most_half_the_kernel() -> None:
    g = chain()
    g.add("p", "pool", ["b"], kernel=2, padding=2)
    raises_at(BadParameterError, "p", g.validate)


def test_factorized_reduce_odd_out_rejected() -> None:
    g = chain()
    g.add("fr", "factorized_reduce", ["b"], out=5)
    raises_at(BadParameterError, "fr", g.validate)


# ------------------------------------------------------------------------------- queries
def test_inputs_of_is_in_slot_order_and_topological_order_is_deterministic() -> None:
    g = ArchGraph()
    g.add("in", "input", shape=[4, 8, 8])
    g.add("z", "conv", ["in"], out=2)
    g.add("y", "conv", ["in"], out=3)
    g.add("x", "conv", ["in"], out=4)
    g.add("cat", "identity", ["x", "z", "y"], merge="concat")
    assert g.inputs_of("cat") == ["x", "z", "y"]
    assert g.topological_order() == ["in", "z", "y", "x", "cat"]  # ties broken by insertion order
    assert g.validate()["cat"] == Shape("map", (9, 8, 8))
    assert g.features_node() == "cat" and g.output == "cat"
    g.add("gp", "global_pool", ["cat"])
    g.add("fc", "linear", ["gp"], out=10)
    assert g.features_node() == "cat"
    g.features = "x"
    assert g.features_node() == "x"


def test_input_shape_is_the_merged_input() -> None:
    g = chain()
    g.add("cat", "conv", ["a", "b"], merge="concat", out=4)
    shapes = g.validate()
    assert g.input_shape("cat", shapes) == Shape("map", (8, 8, 8))
    assert g.input_shape("in", shapes) == Shape("map", (4, 8, 8))


# ------------------------------------------------------------------------------- JSON
def test_json_round_trip_keeps_everything() -> None:
    g = chain()
    g.add("gate", "identity", ["a", "b"], merge="gate", merge_params={"kernel": 3, "bias": -2.0}, block="hw:x")
    g.add("gp", "global_pool", ["gate"])
    g.add("fc", "linear", ["gp"], out=3)
    g.features = "gate"
    back = ArchGraph.from_json(g.to_json(indent=2))
    assert back == g
    assert back.to_dict() == g.to_dict()
    assert back.attrs("gate")["block"] == "hw:x" and back.attrs("gate")["merge_params"] == {"kernel": 3, "bias": -2.0}
    assert (back.input, back.output, back.features, back.name) == ("in", "fc", "gate", "chain")
    assert back.validate() == g.validate()


def test_from_dict_accepts_nodes_in_any_order() -> None:
    g = chain()
    g.add("cat", "identity", ["b", "a"], merge="concat")
    data = g.to_dict()
    data["nodes"].reverse()
    back = ArchGraph.from_dict(data)
    assert back.inputs_of("cat") == ["b", "a"]
    assert back.validate() == g.validate()
    assert back.canonical_hash() == g.canonical_hash()


def _good() -> dict[str, Any]:
    return chain().to_dict()


@pytest.mark.parametrize(("mutate", "node"), [
    (lambda d: d.update(format="nas-arch/2"), None),
    (lambda d: d.pop("format"), None),
    (lambda d: d.pop("nodes"), None),
    (lambda d: d.pop("edges"), None),
    (lambda d: d.pop("output"), None),
    (lambda d: d["edges"].append(["a", "b"]), None),  # edge without slot
    (lambda d: d["edges"].append(["a", "b", "first"]), None),  # slot not an int
    (lambda d: d["nodes"][1].pop("params"), None),
    (lambda d: d["nodes"][1].pop("op"), None),
    (lambda d: d["nodes"][1].update(params=[1, 2]), None),
    (lambda d: d["nodes"].append("conv"), None),
    (lambda d: d["edges"].append(["b", "ghost", 0]), "ghost"),  # edge into a node that does not exist
])
def test_malformed_dict_is_a_format_error(mutate: Any, node: str | None) -> None:
    data = _good()
    mutate(data)
    raises_at(GraphFormatError, node, ArchGraph.from_dict, data)


def test_malformed_json_and_wrong_version() -> None:
    raises_at(GraphFormatError, None, ArchGraph.from_json, "{not json")
    raises_at(GraphFormatError, None, ArchGraph.from_json, "[1, 2, 3]")
    raises_at(GraphFormatError, None, ArchGraph.from_json, json.dumps({**_good(), "format": "nas-arch/0"}))
    assert ArchGraph.from_json(json.dumps({**_good(), "format": FORMAT})) == chain()


def test_json_errors_inside_graph_are_typed() -> None:
    data = _good()
    data["edges"].append(["ghost", "b", 1])  # edge from a node that does not exist
    raises_at(DanglingNodeError, "b", ArchGraph.from_dict, data)
    data = _good()
    data["nodes"][2]["params"]["out"] = "four"
    raises_at(BadParameterError, "b", ArchGraph.from_dict, data)
    data = _good()
    data["nodes"][2]["op"] = "warp"
    raises_at(UnknownOpError, "b", ArchGraph.from_dict, data)


# ------------------------------------------------------------------------------- mutations (property)
SETTINGS = settings(max_examples=40, deadline=None)


@SETTINGS
@given(valid_graphs(), st.randoms(use_true_random=False))
def test_back_edge_gives_cycle_error(g: ArchGraph, rng: random.Random) -> None:
    node = rng.choice([n for n in g.graph if n != g.input])
    ancestor = rng.choice(sorted(nx.ancestors(g.graph, node)))
    on_cycle = (nx.descendants(g.graph, ancestor) | {ancestor}) & (nx.ancestors(g.graph, node) | {node})
    g.graph.add_edge(node, ancestor, slot=len(g.inputs_of(ancestor)))
    with pytest.raises(CycleError) as info:
        g.validate()
    assert info.value.node in on_cycle


@SETTINGS
@given(valid_graphs(), st.randoms(use_true_random=False))
def test_channel_change_feeding_a_merge_gives_channel_mismatch(g: ArchGraph, rng: random.Random) -> None:
    # splice a conv into one input edge of a sum/gate merge, changing that input's channels
    shapes = g.validate()
    merges = [n for n in g.graph if g.attrs(n)["merge"] in ("sum", "gate") and len(g.inputs_of(n)) > 1
              and shapes[g.inputs_of(n)[0]].kind == "map"]
    if not merges:  # make one: replace a random edge u -> v by a residual u -> (u + identity(u)) -> v
        u, v = rng.choice([(u, v) for u, v in g.graph.edges if shapes[u].kind == "map"])
        slot = g.graph.edges[u, v]["slot"]
        g.graph.remove_edge(u, v)
        g.add("twin", "identity", [u])
        g.add("res", "identity", [u, "twin"], merge="sum")
        g.graph.add_edge("res", v, slot=slot)
        g.output = "out"
        shapes = g.validate()
        merges = ["res"]
    merge = rng.choice(merges)
    slot = rng.randrange(len(g.inputs_of(merge)))
    src = g.inputs_of(merge)[slot]
    g.graph.remove_edge(src, merge)
    g.add("widen", "conv", [src], out=shapes[src].channels + rng.randint(1, 3))
    g.graph.add_edge("widen", merge, slot=slot)
    g.output = "out"
    raises_at(ChannelMismatchError, merge, g.validate)


@SETTINGS
@given(valid_graphs(), st.randoms(use_true_random=False))
def test_cutting_a_node_off_gives_unreachable_error(g: ArchGraph, rng: random.Random) -> None:
    node = rng.choice([n for n in g.graph if n != g.input])
    g.graph.remove_edges_from(list(g.graph.in_edges(node)))
    raises_at(UnreachableNodeError, node, g.validate)


@SETTINGS
@given(valid_graphs(), st.randoms(use_true_random=False))
def test_side_branch_gives_dangling_error(g: ArchGraph, rng: random.Random) -> None:
    node = rng.choice([n for n in g.graph if n != g.output])
    g.add("extra", "identity", [node])
    g.output = "out"
    raises_at(DanglingNodeError, "extra", g.validate)


@SETTINGS
@given(valid_graphs(), st.randoms(use_true_random=False))
def test_edited_json_gives_typed_error_at_that_node(g: ArchGraph, rng: random.Random) -> None:
    data = g.to_dict()
    entry = rng.choice(data["nodes"])
    kind = rng.choice(["unknown_param", "unknown_op", "bad_merge"])
    if kind == "unknown_param":
        entry["params"]["bogus"] = 1
        raises_at(BadParameterError, entry["id"], ArchGraph.from_dict, data)
    elif kind == "unknown_op":
        entry["op"] = "warp"
        raises_at(UnknownOpError, entry["id"], ArchGraph.from_dict, data)
    else:
        entry["merge"] = "product"
        raises_at(BadParameterError, entry["id"], ArchGraph.from_dict, data)
