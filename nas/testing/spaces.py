"""``SpaceConformance``: the checks every search space must pass (the contract of
:mod:`search_spaces.spaces.base`).

Apply it by subclassing in a test module (the subclass's name must start with ``Test``)::

    class TestMySpace(SpaceConformance):
        samples = 8  # members checked per test (to_graph is the expensive part)

        def make_space(self) -> SearchSpace:
            return MySpace(input_shape=(3, 16, 16))

Every check is derived from the contract alone, so it holds for any correct space:

* ``variables``: non-empty, unique non-empty names, cardinality >= 1; ``size`` is the product of
  the cardinalities.
* ``encode`` / ``decode`` are inverse bijections on the product of the variables' ranges
  (random vectors and the two corners, all zeros and all maxima); ``decode`` rejects a wrong
  length or an out-of-range entry with ``ValueError``.
* ``sample(rng)`` is a function of the generator's state only (same seed, same members; a
  different seed differs), returns members and is uniform per variable.
* ``neighbours`` are exactly the members one variable-change away (categorical: every other
  value; ordinal: the adjacent values); ``mutate`` returns one of them, reaches every variable
  that can move, and is seeded.
* no global RNG (``random``, ``numpy.random``) is consumed.
* ``to_json`` / ``from_json`` round-trip a member through ``json``; a member of another space is
  refused with ``ValueError``.
* ``to_graph`` (unless ``graph_check = False``) returns a validated :class:`ArchGraph` whose
  ``canonical_hash`` is the same for two builds of the same member. Distinct members may share a
  hash (an all-``none`` cell collapses), so that is not required.

A degenerate space (every variable has one value) passes too: it has no neighbours, and
``mutate`` must then return the member unchanged.

:class:`IndexSpace` is a product space of plain index tuples (no networks) for strategy checks on
spaces of any shape: tiny, exhaustible, one-member.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections import Counter
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from search_spaces.ir import ArchGraph
from search_spaces.ops import Shape
from search_spaces.spaces.base import SearchSpace, Variable


def assert_member(space: SearchSpace, arch: Hashable) -> np.ndarray:
    """Assert that ``arch`` is a member of ``space``; returns its encoding.

    Checks: hashable; ``encode`` gives an int vector with one in-range entry per variable;
    ``decode`` of it gives ``arch`` back; ``from_json`` of ``to_json`` (through ``json``) too.
    """
    hash(arch)
    x = space.encode(arch)
    assert isinstance(x, np.ndarray), f"{space.name}: encode returned {type(x).__name__}, not an ndarray"
    assert np.issubdtype(x.dtype, np.integer), f"{space.name}: encode returned dtype {x.dtype}, not an int dtype"
    assert x.shape == (len(space.variables),), f"{space.name}: encoding of shape {x.shape} for {arch!r}"
    cards = np.array(space.cardinalities)
    assert bool(((x >= 0) & (x < cards)).all()), f"{space.name}: encoding {x.tolist()} out of range {cards.tolist()}"
    assert space.decode(x) == arch, f"{space.name}: decode(encode(arch)) != arch for {arch!r}"
    data = json.loads(json.dumps(space.to_json(arch)))
    assert space.from_json(data) == arch, f"{space.name}: from_json(to_json(arch)) != arch for {arch!r}"
    return x


def expected_neighbour_codes(space: SearchSpace, x: np.ndarray) -> list[tuple[int, ...]]:
    """Encodings one variable-change away from ``x``, computed from the contract (not the space)."""
    out = []
    for i, var in enumerate(space.variables):
        xi = int(x[i])
        if var.ordinal:
            values = [j for j in (xi - 1, xi + 1) if 0 <= j < var.cardinality]
        else:
            values = [j for j in range(var.cardinality) if j != xi]
        for j in values:
            y = [int(v) for v in x]
            y[i] = j
            out.append(tuple(y))
    return out


@contextmanager
def untouched_global_rngs(what: str) -> Iterator[None]:
    """Assert that the block consumes none of the global generators: ``random``, ``numpy.random``
    and, when torch is imported, torch's default CPU generator."""
    torch = sys.modules.get("torch")
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = None if torch is None else torch.random.get_rng_state()
    yield
    assert random.getstate() == py_state, f"{what} consumed the global `random` generator"
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:], \
        f"{what} consumed the global numpy.random generator"
    if torch is not None and torch_state is not None:
        assert torch.equal(torch.random.get_rng_state(), torch_state), f"{what} consumed torch's global generator"


class IndexSpace(SearchSpace):
    """Members are index tuples of the product ``∏ range(card_i)``; ``ordinal[i]`` marks ordinal
    variables. Strategies never build graphs, so ``to_graph`` raises."""

    def __init__(self, cardinalities: tuple[int, ...], ordinal: tuple[bool, ...] | None = None,
                 name: str | None = None) -> None:
        ordinal = ordinal or (False,) * len(cardinalities)
        self.name = name or "index-" + "x".join(str(c) for c in cardinalities)
        self.variables = tuple(Variable(f"v{i}", tuple(range(c)), ordinal=o)
                               for i, (c, o) in enumerate(zip(cardinalities, ordinal, strict=True)))

    def encode(self, arch: Hashable) -> np.ndarray:
        x = np.asarray(arch, dtype=np.int64)
        if x.shape != (len(self.variables),) or not bool(((x >= 0) & (x < self.cardinalities)).all()):
            raise ValueError(f"{self.name}: not a member: {arch!r}")
        return x

    def decode_indices(self, indices: tuple[int, ...]) -> Hashable:
        return tuple(indices)

    def to_graph(self, arch: Hashable) -> ArchGraph:
        raise NotImplementedError(f"{self.name}: members are index tuples, not networks")


class _ForeignSpace(SearchSpace):
    """A one-variable space of another name: the source of 'another space's' members and JSON."""

    name = "nas.testing.foreign-space"

    def __init__(self) -> None:
        self.variables = (Variable("only", (0, 1)),)

    def encode(self, arch: Hashable) -> np.ndarray:
        return np.array([int(arch)], dtype=np.int64)  # type: ignore[call-overload]

    def decode_indices(self, indices: tuple[int, ...]) -> Hashable:
        return indices[0]

    def to_graph(self, arch: Hashable) -> ArchGraph:
        raise NotImplementedError


class SpaceConformance:
    """Test-class mixin: the :mod:`search_spaces.spaces.base` contract for the space of :meth:`make_space`.

    Override :meth:`make_space`; tune with the class attributes below.
    """

    graph_check: bool = True
    """Build, validate and hash ``to_graph`` of the checked members (False: skip those checks)."""
    samples: int = 20
    """Random members checked per test, besides the two corners."""
    uniformity_draws: int = 2000
    """Samples drawn for the per-variable uniformity check of ``sample``."""
    mutation_members: int = 4
    """Members whose mutations are checked (each mutated ``40 x movable variables`` times)."""

    # ------------------------------------------------------------------ hooks
    def make_space(self) -> SearchSpace:
        """A fresh instance of the space under test."""
        raise NotImplementedError(f"{type(self).__name__} must override make_space()")

    # ------------------------------------------------------------------ helpers
    def _vectors(self, space: SearchSpace, seed: int = 0) -> list[np.ndarray]:
        """The corners (all zeros, all maxima), then ``samples`` random vectors of the product."""
        rng = np.random.default_rng(seed)
        cards = np.array(space.cardinalities, dtype=np.int64)
        corners = [np.zeros(len(cards), dtype=np.int64), cards - 1]
        return corners + [rng.integers(cards) for _ in range(self.samples)]

    def _members(self, space: SearchSpace) -> list[Hashable]:
        return [space.decode(v) for v in self._vectors(space)]

    # ------------------------------------------------------------------ variables and size
    def test_variables_are_well_formed(self) -> None:
        space = self.make_space()
        assert isinstance(space.name, str) and space.name, "a space needs a non-empty name (to_json records it)"
        variables = list(space.variables)
        assert variables, f"{space.name}: a space needs at least one variable"
        for var in variables:
            assert isinstance(var, Variable), f"{space.name}: {var!r} is not a Variable"
            assert isinstance(var.name, str) and var.name, f"{space.name}: variable {var!r} has no name"
            assert var.cardinality >= 1, f"{space.name}: variable {var.name!r} has no choices"
            assert isinstance(var.ordinal, bool), f"{space.name}: {var.name!r}.ordinal is not a bool"
        names = Counter(v.name for v in variables)
        assert not [n for n, k in names.items() if k > 1], f"{space.name}: repeated variable names {names}"
        assert space.cardinalities == [v.cardinality for v in variables]

    def test_size_is_the_product_of_cardinalities(self) -> None:
        space = self.make_space()
        assert space.size == math.prod(v.cardinality for v in space.variables)

    # ------------------------------------------------------------------ encoding
    def test_encode_decode_round_trip(self) -> None:
        space = self.make_space()
        vectors = self._vectors(space)
        members = []
        for v in vectors:
            arch = space.decode(v)
            x = assert_member(space, arch)
            assert x.tolist() == v.tolist(), f"{space.name}: encode(decode({v.tolist()})) = {x.tolist()}"
            assert space.decode(v.tolist()) == arch and space.decode(v.astype(np.int32)) == arch, \
                f"{space.name}: decode depends on the vector's container or dtype"
            assert hash(space.decode(v)) == hash(arch), f"{space.name}: equal members hash differently"
            members.append(arch)
        distinct_vectors = {tuple(v.tolist()) for v in vectors}
        assert len(set(members)) == len(distinct_vectors), f"{space.name}: distinct vectors decode to equal members"

    def test_decode_rejects_bad_vectors(self) -> None:
        space = self.make_space()
        n = len(space.variables)
        base = np.zeros(n, dtype=np.int64)
        for length in (n - 1, n + 1):
            with pytest.raises(ValueError):
                space.decode(np.zeros(length, dtype=np.int64))
        for i, var in enumerate(space.variables):
            for bad in (-1, var.cardinality):
                v = base.copy()
                v[i] = bad
                with pytest.raises(ValueError):
                    space.decode(v)

    # ------------------------------------------------------------------ sampling
    def test_sample_is_seeded_and_returns_members(self) -> None:
        space = self.make_space()
        rng, replay = np.random.default_rng(3), np.random.default_rng(3)
        first = [space.sample(rng) for _ in range(self.samples)]
        again = [space.sample(replay) for _ in range(self.samples)]
        assert first == again, f"{space.name}: sample differs for the same generator state"
        for arch in first:
            assert_member(space, arch)
        other_rng = np.random.default_rng(4)
        other = [space.sample(other_rng) for _ in range(self.samples)]
        if space.size > 1 and self.samples >= 5:
            assert other != first, f"{space.name}: samples do not depend on the generator's seed"

    def test_sample_is_uniform_per_variable(self) -> None:
        space = self.make_space()
        rng = np.random.default_rng(5)
        n = self.uniformity_draws
        codes = np.stack([space.encode(space.sample(rng)) for _ in range(n)])
        for i, var in enumerate(space.variables):
            p = 1.0 / var.cardinality
            counts = np.bincount(codes[:, i], minlength=var.cardinality)
            slack = 6.0 * math.sqrt(n * p * (1.0 - p)) + 1.0  # six standard deviations
            assert np.abs(counts - n * p).max() <= slack, \
                f"{space.name}: variable {var.name!r} is not sampled uniformly: counts {counts.tolist()} of {n}"

    def test_no_global_rng_is_consumed(self) -> None:
        space = self.make_space()
        rng = np.random.default_rng(6)
        with untouched_global_rngs(f"{space.name}: sample/mutate/neighbours"):
            for _ in range(5):
                arch = space.sample(rng)
                space.neighbours(arch)
                if expected_neighbour_codes(space, space.encode(arch)):
                    space.mutate(arch, rng)

    # ------------------------------------------------------------------ neighbourhood
    def test_neighbours_are_exactly_one_variable_away(self) -> None:
        space = self.make_space()
        for arch in self._members(space):
            x = space.encode(arch)
            expected = expected_neighbour_codes(space, x)
            nbrs = space.neighbours(arch)
            assert len(nbrs) == len(expected), \
                f"{space.name}: {len(nbrs)} neighbours of {x.tolist()}, the contract gives {len(expected)}"
            got = []
            for nbr in nbrs:
                y = assert_member(space, nbr)
                assert int((y != x).sum()) == 1, f"{space.name}: neighbour {y.tolist()} of {x.tolist()}"
                got.append(tuple(y.tolist()))
            assert sorted(got) == sorted(expected), f"{space.name}: wrong neighbours of {x.tolist()}"

    def test_mutate_returns_a_neighbour_and_reaches_every_movable_variable(self) -> None:
        space = self.make_space()
        members = self._members(space)[: self.mutation_members]
        checked = 0
        for k, arch in enumerate(members):
            x = space.encode(arch)
            expected = set(expected_neighbour_codes(space, x))
            if not expected:
                assert space.mutate(arch, np.random.default_rng(k)) == arch, \
                    f"{space.name}: mutate of a member without neighbours must return it unchanged"
                continue
            movable = {i for i, var in enumerate(space.variables) if var.cardinality > 1}
            rng = np.random.default_rng(100 + k)
            changed: Counter[int] = Counter()
            children = [space.mutate(arch, rng) for _ in range(40 * len(movable))]
            for child in children:
                y = space.encode(child)
                assert tuple(y.tolist()) in expected, f"{space.name}: mutate gave {y.tolist()}, not a neighbour of " \
                                                      f"{x.tolist()}"
                changed[int(np.flatnonzero(y != x)[0])] += 1
            missing = sorted(movable - set(changed))
            assert not missing, f"{space.name}: mutate never changed variables " \
                                f"{[space.variables[i].name for i in missing]} of {x.tolist()}"
            replay = np.random.default_rng(100 + k)
            assert [space.mutate(arch, replay) for _ in range(10)] == children[:10], \
                f"{space.name}: mutate differs for the same generator state"
            checked += 1
        if any(v.cardinality > 1 for v in space.variables):
            assert checked, f"{space.name}: no checked member could be mutated"

    # ------------------------------------------------------------------ JSON
    def test_json_round_trip(self) -> None:
        space = self.make_space()
        for arch in self._members(space):
            data = space.to_json(arch)
            text = json.dumps(data, allow_nan=False)
            assert space.from_json(data) == arch and space.from_json(json.loads(text)) == arch, \
                f"{space.name}: to_json/from_json does not round-trip {arch!r}"

    def test_from_json_of_another_space_raises(self) -> None:
        space = self.make_space()
        arch = space.decode(np.zeros(len(space.variables), dtype=np.int64))
        foreign = _ForeignSpace()
        assert foreign.name != space.name
        with pytest.raises(ValueError):
            space.from_json(foreign.to_json(1))
        renamed: dict[str, Any] = dict(space.to_json(arch))
        renamed["space"] = f"{space.name}.other"
        with pytest.raises(ValueError):
            space.from_json(renamed)

    # ------------------------------------------------------------------ graphs
    def test_to_graph_is_validated_with_a_stable_hash(self) -> None:
        if not self.graph_check:
            pytest.skip("graph_check = False for this space")
        space = self.make_space()
        input_shape = getattr(space, "input_shape", None)
        num_classes = getattr(space, "num_classes", None)
        for arch in self._members(space):
            g = space.to_graph(arch)
            assert isinstance(g, ArchGraph), f"{space.name}: to_graph returned {type(g).__name__}"
            shapes = g.validate()
            if input_shape is not None:
                assert shapes[g.input].dims == tuple(input_shape), \
                    f"{space.name}: graph input {shapes[g.input]} is not the space's input_shape {input_shape}"
            if num_classes is not None:
                assert shapes[g.output] == Shape("vec", (num_classes,)), \
                    f"{space.name}: graph output {shapes[g.output]} is not {num_classes} logits"
            again = space.to_graph(space.decode(space.encode(arch)))
            assert again.canonical_hash() == g.canonical_hash(), \
                f"{space.name}: two builds of {arch!r} hash differently"
