"""Canonical form and hash of an architecture graph.

The hash depends only on the architecture, not on node ids or insertion order: two graphs that
are isomorphic (same ops, params, merges, edges and concat/gate slot order) get the same digest,
in any process (sha256 of a canonical JSON certificate, never Python's ``hash()``).

Method: colour refinement (1-WL over predecessors and successors, with edge slot labels) to a
stable partition, then individualisation-refinement over the remaining ties, keeping the
lexicographically smallest certificate. This is exact canonical labelling; the search over ties
is capped at ``MAX_LEAVES`` leaves (only reached by graphs with very many interchangeable
nodes, whose ties are then almost surely automorphisms and any choice gives the same result).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from search_spaces.ir import ArchGraph

MAX_LEAVES = 64


def _node_label(arch: ArchGraph, node: str) -> str:
    a = arch.attrs(node)
    merge = a["merge"] if arch.graph.in_degree(node) > 1 else None  # a merge of one input is a no-op
    label = [a["op"], a["params"], merge, a["merge_params"], node == arch.output]
    return json.dumps(label, sort_keys=True, separators=(",", ":"))


def _rank(values: list) -> list[int]:
    order = {v: i for i, v in enumerate(sorted(set(values)))}
    return [order[v] for v in values]


class _Canonicaliser:
    def __init__(self, arch: ArchGraph) -> None:
        self.nodes = list(arch.graph.nodes)
        index = {node: i for i, node in enumerate(self.nodes)}
        self.labels = [_node_label(arch, node) for node in self.nodes]
        self.preds: list[list[tuple[int, int]]] = [[] for _ in self.nodes]
        self.succs: list[list[tuple[int, int]]] = [[] for _ in self.nodes]
        self.edges: list[tuple[int, int, int]] = []
        for u, v, data in arch.graph.edges(data=True):
            ordered = arch.attrs(v)["merge"] in ("concat", "gate")
            slot = int(data["slot"]) if ordered else 0
            self.preds[index[v]].append((slot, index[u]))
            self.succs[index[u]].append((slot, index[v]))
            self.edges.append((index[u], index[v], slot))
        self.leaves = 0

    def refine(self, colors: list[int]) -> list[int]:
        count = len(set(colors))
        while True:
            signatures = [
                (colors[i],
                 tuple(sorted((s, colors[j]) for s, j in self.preds[i])),
                 tuple(sorted((s, colors[j]) for s, j in self.succs[i])))
                for i in range(len(colors))
            ]
            colors = _rank(signatures)
            new_count = len(set(colors))
            if new_count == count:
                return colors
            count = new_count

    def certificate(self, colors: list[int]) -> str:
        position = colors  # all distinct: the colour is the canonical position
        nodes = [self.labels[i] for i in sorted(range(len(colors)), key=colors.__getitem__)]
        edges = sorted((position[u], position[v], s) for u, v, s in self.edges)
        return json.dumps([nodes, edges], separators=(",", ":"))

    def search(self, colors: list[int]) -> str:
        colors = self.refine(colors)
        classes: dict[int, list[int]] = {}
        for i, c in enumerate(colors):
            classes.setdefault(c, []).append(i)
        ties = [members for c, members in sorted(classes.items()) if len(members) > 1]
        if not ties:
            self.leaves += 1
            return self.certificate(colors)
        best: str | None = None
        for member in ties[0]:
            individualised = [2 * c for c in colors]
            individualised[member] += 1
            cert = self.search(individualised)
            best = cert if best is None or cert < best else best
            if self.leaves >= MAX_LEAVES:
                break
        assert best is not None
        return best


def canonical_certificate(arch: ArchGraph) -> str:
    """A string equal for isomorphic graphs and (up to the tie cap) different otherwise."""
    canon = _Canonicaliser(arch)
    return canon.search(_rank(canon.labels))


def canonical_hash(arch: ArchGraph) -> str:
    """sha256 hex digest of :func:`canonical_certificate`."""
    return hashlib.sha256(canonical_certificate(arch).encode()).hexdigest()
