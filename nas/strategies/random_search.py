"""Random search: the baseline. Every proposal is an independent uniform sample of the space."""

from __future__ import annotations

from collections.abc import Hashable

from nas.strategies.base import Strategy


class RandomSearch(Strategy):
    """Uniform sampling (``space.sample``); results only update ``best``; failures are forgotten."""

    name = "random"

    def _propose(self) -> Hashable:
        return self.space.sample(self.rng)
