"""Canonical hash: invariant under relabelling and insertion order, sensitive to the architecture."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import relabelled, valid_graphs

from search_spaces.canonical import canonical_certificate
from search_spaces.ir import ArchGraph

SETTINGS = settings(max_examples=50, deadline=None)
ROOT = Path(__file__).resolve().parents[2]


def two_branch(first: int = 4, second: int = 6, merge: str = "concat") -> ArchGraph:
    g = ArchGraph()
    g.add("in", "input", shape=[3, 8, 8])
    g.add("a", "conv", ["in"], out=first)
    g.add("b", "conv", ["in"], out=second)
    g.add("m", "identity", ["a", "b"], merge=merge)
    return g


def _other_value(value: Any, rng: random.Random) -> Any:
    """A different value of the same type (validity does not matter for hashing)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rng.choice([-1, 1, 2])
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, list):
        return [*value[:-1], value[-1] + 1]
    return value + "_other"


# ------------------------------------------------------------------------------- examples
def test_hash_is_a_sha256_hex_digest_and_ignores_ids_names_blocks() -> None:
    g = two_branch()
    digest = g.canonical_hash()
    assert len(digest) == 64 and int(digest, 16) >= 0
    h = ArchGraph("another name")
    h.add("x", "input", shape=[3, 8, 8])
    h.add("q", "conv", ["x"], out=6, block="left")  # inserted in the other order
    h.add("p", "conv", ["x"], out=4, block="right")
    h.add("out", "identity", ["p", "q"], merge="concat")
    h.features = "p"
    assert h.canonical_hash() == digest


def test_concat_slot_order_matters_but_sum_order_does_not() -> None:
    assert two_branch(4, 6).canonical_hash() != two_branch(6, 4).canonical_hash()
    assert two_branch(4, 4).canonical_hash() == two_branch(4, 4).canonical_hash()
    g = two_branch(4, 4, merge="sum")
    h = ArchGraph()
    h.add("in", "input", shape=[3, 8, 8])
    h.add("a", "conv", ["in"], out=4)
    h.add("b", "conv", ["in"], out=4)
    h.add("m", "identity", ["b", "a"], merge="sum")
    assert g.canonical_hash() == h.canonical_hash()
    g.graph.nodes["a"]["params"]["kernel"] = 5
    h.graph.nodes["a"]["params"]["kernel"] = 5  # in h, 'a' is on slot 1 of the sum: same architecture
    assert g.canonical_hash() == h.canonical_hash()


def test_gate_slot_order_matters() -> None:
    def gate(order: list[str]) -> ArchGraph:
        g = ArchGraph()
        g.add("in", "input", shape=[4, 8, 8])
        g.add("h", "conv", ["in"], out=4)
        g.add("x", "identity", ["in"])
        g.add("gate", "identity", order, merge="gate")
        return g

    assert gate(["h", "x"]).canonical_hash() != gate(["x", "h"]).canonical_hash()


def test_output_node_and_merge_kind_are_part_of_the_identity() -> None:
    g, h = two_branch(4, 4, "sum"), two_branch(4, 4, "concat")
    assert g.canonical_hash() != h.canonical_hash()
    g2 = two_branch(4, 4, "sum")
    g2.output = "a"
    assert g2.canonical_hash() != g.canonical_hash()


def test_symmetric_graph_with_many_ties() -> None:
    """Six interchangeable branches: ties broken by individualisation, result independent of ids."""
    def star(order: list[int]) -> ArchGraph:
        g = ArchGraph()
        g.add("in", "input", shape=[4, 8, 8])
        for i in order:
            g.add(f"b{i}", "conv", ["in"], out=4, kernel=3 if i % 2 else 1)
        g.add("s", "identity", [f"b{i}" for i in order], merge="sum")
        return g

    assert star([0, 1, 2, 3, 4, 5]).canonical_hash() == star([5, 3, 1, 0, 2, 4]).canonical_hash()
    changed = star([0, 1, 2, 3, 4, 5])
    changed.graph.nodes["b2"]["params"]["kernel"] = 3
    assert changed.canonical_hash() != star([0, 1, 2, 3, 4, 5]).canonical_hash()


def test_non_isomorphic_graphs_with_equal_colour_refinement_are_distinguished() -> None:
    """Two graphs 1-WL cannot tell apart (a 6-cycle vs two triangles, as identity nodes between
    the input and a sum): only the individualisation step separates them."""
    def ring(pairs: list[tuple[int, int]]) -> ArchGraph:
        g = ArchGraph()
        g.add("in", "input", shape=[4])
        for i in range(6):
            g.add(f"x{i}", "identity", ["in"])
        for k, (i, j) in enumerate(pairs):
            g.add(f"e{k}", "identity", [f"x{i}", f"x{j}"], merge="sum")
        g.add("out", "identity", [f"e{k}" for k in range(len(pairs))], merge="sum")
        return g

    hexagon = ring([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)])
    triangles = ring([(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3)])
    hexagon.validate()
    triangles.validate()
    assert hexagon.canonical_hash() != triangles.canonical_hash()
    shuffled_hexagon = ring([(3, 2), (5, 0), (1, 0), (4, 5), (2, 1), (3, 4)])
    assert shuffled_hexagon.canonical_hash() == hexagon.canonical_hash()


# ------------------------------------------------------------------------------- properties
@SETTINGS
@given(valid_graphs(), st.randoms(use_true_random=False))
def test_hash_invariant_under_relabelling_and_insertion_order(g: ArchGraph, rng: random.Random) -> None:
    other = relabelled(g, rng)
    assert set(other.graph.nodes).isdisjoint(g.graph.nodes)
    assert other.validate()[other.output] == g.validate()[g.output]
    assert other.canonical_hash() == g.canonical_hash()
    assert canonical_certificate(other) == canonical_certificate(g)


@SETTINGS
@given(valid_graphs(), st.randoms(use_true_random=False))
def test_hash_changes_when_a_parameter_changes(g: ArchGraph, rng: random.Random) -> None:
    before = g.canonical_hash()
    node = rng.choice([n for n in g.graph if g.params(n)])
    name = rng.choice(sorted(g.params(node)))
    g.graph.nodes[node]["params"][name] = _other_value(g.params(node)[name], rng)
    assert g.canonical_hash() != before


@SETTINGS
@given(valid_graphs(), st.randoms(use_true_random=False))
def test_hash_changes_when_concat_inputs_are_swapped(g: ArchGraph, rng: random.Random) -> None:
    shapes = g.validate()
    # append a concat of two nodes of equal resolution but different widths, then swap its slots
    body = [n for n in g.graph if shapes[n].kind == "map"]
    pairs = [(u, v) for u in body for v in body
             if shapes[u].dims[1:] == shapes[v].dims[1:] and shapes[u].channels != shapes[v].channels]
    if pairs:
        u, v = rng.choice(pairs)
    else:
        u = rng.choice(body)
        v = g.add("wider", "conv", [u], out=shapes[u].channels + 1)
    g.add("cat", "identity", [u, v], merge="concat")
    g.add("pooled", "global_pool", ["cat"])
    g.add("tail", "identity", ["out", "pooled"], merge="concat")
    assert g.validate()["tail"].channels == shapes["out"].channels + shapes[u].channels + g.validate()[v].channels
    before = g.canonical_hash()
    g.graph.edges[u, "cat"]["slot"], g.graph.edges[v, "cat"]["slot"] = 1, 0
    assert g.inputs_of("cat") == [v, u]
    assert g.canonical_hash() != before


@SETTINGS
@given(valid_graphs())
def test_json_round_trip_gives_equal_graph_and_hash(g: ArchGraph) -> None:
    back = ArchGraph.from_json(g.to_json())
    assert back == g
    assert back.canonical_hash() == g.canonical_hash()
    assert back.validate() == g.validate()
    assert ArchGraph.from_dict(json.loads(json.dumps(back.to_dict()))) == g


@settings(max_examples=1, deadline=None)
@given(st.lists(valid_graphs(), min_size=3, max_size=3), st.randoms(use_true_random=False))
def test_hash_is_stable_across_processes(random_graphs: list[ArchGraph], rng: random.Random) -> None:
    graphs = [two_branch(), two_branch(4, 4, "sum"), relabelled(two_branch(5, 7), rng), *random_graphs]
    texts = [g.to_json() for g in graphs]
    expected = [g.canonical_hash() for g in graphs]
    assert len(set(expected)) == len(set(texts))
    script = ("import json, sys\nfrom search_spaces.ir import ArchGraph\n"
              "print(json.dumps([ArchGraph.from_json(t).canonical_hash() for t in json.load(sys.stdin)]))")
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run([sys.executable, "-c", script], input=json.dumps(texts), capture_output=True,
                                text=True, env=env, cwd=ROOT, check=True, timeout=120)
        assert json.loads(result.stdout) == expected
