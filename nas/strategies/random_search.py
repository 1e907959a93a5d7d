"""Random search: the baseline. Every proposal is a uniform sample of the members not yet proposed
(a repeated sample is redrawn, see the base contract)."""

from __future__ import annotations

from collections.abc import Hashable

from nas.strategies.base import Strategy


class RandomSearch(Strategy):
    """Uniform sampling (``space.sample``) without repeats; full-budget results only update ``best``
    (and the Pareto front, multi-objective); early-stopped and failed ones are forgotten."""

    name = "random"
    multi_objective = True

    def _propose(self) -> Hashable:
        return self.space.sample(self.rng)
