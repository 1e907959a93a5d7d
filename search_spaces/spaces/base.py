"""The search-space interface shared by every space and every strategy.

A space describes its members (architectures, ``arch`` below: an immutable, hashable value of
the space's own type, e.g. an NB-201 op tuple or a DARTS genotype) by a fixed list of
:class:`Variable` s. The contract:

* ``encode(arch) -> np.ndarray`` (int64, one entry per variable, ``0 <= v[i] < card_i``) and
  ``decode(vector) -> arch`` are inverse bijections between members and the full product of the
  variables' ranges: every vector in the product decodes to a valid member. This is the encoding
  Bayesian optimisation works on (categorical = complete graph, ordinal = path graph in COMBO).
* ``sample(rng)`` draws uniformly from the product (per-variable uniform).
* ``neighbours(arch)`` are the members one variable-change away: any other value of a
  categorical variable, the adjacent value(s) of an ordinal one. ``mutate(arch, rng)`` picks a
  variable uniformly among those with a neighbour, then a neighbour value uniformly; a member
  without neighbours (every variable single-valued) is returned unchanged.
* ``to_graph(arch) -> ArchGraph`` is the full network (validated shapes) for the space's
  input shape and class count; ``to_json`` / ``from_json`` round-trip a member as plain data.

``rng`` is always a ``numpy.random.Generator``; no global RNG is touched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph


@dataclass(frozen=True)
class Variable:
    """One decision: ``choices`` are its values; ``ordinal`` means they are ordered (±1 steps)."""

    name: str
    choices: tuple[Any, ...]
    ordinal: bool = False

    @property
    def cardinality(self) -> int:
        return len(self.choices)

    def neighbour_indices(self, i: int) -> list[int]:
        if self.ordinal:
            return [j for j in (i - 1, i + 1) if 0 <= j < self.cardinality]
        return [j for j in range(self.cardinality) if j != i]


class SearchSpace(ABC):
    """Base class; subclasses set ``name`` and ``variables`` and implement encode/decode/to_graph."""

    name: str = ""
    variables: Sequence[Variable] = ()

    @abstractmethod
    def encode(self, arch: Hashable) -> np.ndarray:
        """Member -> int64 vector, one index per variable."""

    @abstractmethod
    def decode_indices(self, indices: tuple[int, ...]) -> Hashable:
        """Checked index tuple -> member (called by :meth:`decode`)."""

    @abstractmethod
    def to_graph(self, arch: Hashable) -> ArchGraph:
        """Member -> full network graph."""

    # -------------------------------------------------------------------- generic behaviour
    @property
    def cardinalities(self) -> list[int]:
        return [v.cardinality for v in self.variables]

    @property
    def size(self) -> int:
        """Number of members (product of cardinalities)."""
        return int(np.prod(self.cardinalities, dtype=object))

    def decode(self, vector: Sequence[int] | np.ndarray) -> Hashable:
        """int vector -> member; ValueError naming the variable when an entry is out of range."""
        values = [int(v) for v in np.asarray(vector).reshape(-1)]
        if len(values) != len(self.variables):
            raise InputError(f"{self.name}: expected a vector of {len(self.variables)} entries, got {len(values)}")
        for var, v in zip(self.variables, values, strict=True):
            if not 0 <= v < var.cardinality:
                raise InputError(f"{self.name}: variable {var.name!r} must be in 0..{var.cardinality - 1}, got {v}")
        return self.decode_indices(tuple(values))

    def sample(self, rng: np.random.Generator) -> Hashable:
        return self.decode_indices(tuple(int(rng.integers(c)) for c in self.cardinalities))

    def neighbours(self, arch: Hashable) -> list[Hashable]:
        x = self.encode(arch)
        out = []
        for i, var in enumerate(self.variables):
            for j in var.neighbour_indices(int(x[i])):
                y = x.copy()
                y[i] = j
                out.append(self.decode_indices(tuple(int(v) for v in y)))
        return out

    def mutate(self, arch: Hashable, rng: np.random.Generator) -> Hashable:
        x = self.encode(arch)
        movable = [i for i, var in enumerate(self.variables) if var.neighbour_indices(int(x[i]))]
        if not movable:
            return arch  # no neighbours: the space has one member
        i = movable[int(rng.integers(len(movable)))]
        options = self.variables[i].neighbour_indices(int(x[i]))
        x[i] = options[int(rng.integers(len(options)))]
        return self.decode_indices(tuple(int(v) for v in x))

    def to_json(self, arch: Hashable) -> dict[str, Any]:
        """Plain-data form: the space name and the encoding by variable name."""
        x = self.encode(arch)
        return {"space": self.name, "encoding": {v.name: int(i) for v, i in zip(self.variables, x, strict=True)}}

    def from_json(self, data: dict[str, Any]) -> Hashable:
        if data.get("space") != self.name:
            raise InputError(f"architecture belongs to space {data.get('space')!r}, not {self.name!r}")
        encoding = data.get("encoding", {})
        missing = [v.name for v in self.variables if v.name not in encoding]
        if missing:
            raise InputError(f"{self.name}: encoding lacks variables {missing}")
        return self.decode([encoding[v.name] for v in self.variables])
