"""Conformance suites: reusable pytest test classes that every strategy or search space, built-in
or user-written, must pass (in the style of ``optuna.testing``).

* :class:`StrategyConformance` checks the ask/tell contract of :mod:`nas.strategies.base` (ids,
  asynchronous asks, no repeated proposals, failures, early-stopped results, ``best``, seeding,
  ``state_dict`` resume, one-member spaces) and that the strategy finds a planted optimum
  (:class:`PlantedObjective`, :func:`run_planted`).
* :class:`MultiObjectiveConformance` checks the multi-objective part of that contract (vector
  tells, failures, the Pareto front, state) and that the strategy searches a planted front
  better than random search (:class:`PlantedFront`).
* :class:`SpaceConformance` checks the contract of :mod:`search_spaces.spaces.base` (encoding
  bijection, sampling, neighbours and mutation, JSON, validated graphs with stable hashes).

Subclass one in a test module, under a name starting with ``Test``, and override its hooks::

    from nas.testing import SpaceConformance, StrategyConformance

    class TestMyStrategy(StrategyConformance):
        def make_strategy(self, space, seed):
            return MyStrategy(space, seed=seed)

    class TestMySpace(SpaceConformance):
        def make_space(self):
            return MySpace()

Class attributes tune the checks (e.g. ``planted_budget``, ``planted_mode``, ``finds_planted``;
``samples``, ``graph_check``); see each suite's docstring.
"""

import pytest

pytest.register_assert_rewrite("nas.testing.spaces", "nas.testing.strategies", "nas.testing.multi_objective")

from nas.testing.multi_objective import MultiObjectiveConformance, PlantedFront, run_front  # noqa: E402
from nas.testing.spaces import IndexSpace, SpaceConformance, assert_member  # noqa: E402
from nas.testing.strategies import PlantedObjective, PlantedRun, StrategyConformance, run_planted  # noqa: E402

__all__ = ["IndexSpace", "MultiObjectiveConformance", "PlantedFront", "PlantedObjective", "PlantedRun",
           "SpaceConformance", "StrategyConformance", "assert_member", "run_front", "run_planted"]
