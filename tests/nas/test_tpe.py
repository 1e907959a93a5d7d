"""Optuna TPE behind the ask/tell contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from datapaths import NB201_TABLE

from nas.benchmarks.nb201 import NB201Table, run_protocol, strategy_ask_tell
from nas.strategies import OptunaTPE, RandomSearch, make_strategy
from search_spaces.spaces.macro import MacroSpace
from search_spaces.spaces.nb201 import NB201Space

SPACE = NB201Space()


def score(space: NB201Space, arch: object) -> float:
    """A synthetic objective with a unique optimum: count of edges equal to nor_conv_3x3 (index 3)."""
    return float(np.sum(space.encode(arch) == 3))


def drive(strategy: OptunaTPE, n: int, fail_every: int = 0) -> list[object]:
    archs = []
    for i in range(n):
        p = strategy.ask()
        archs.append(p.arch)
        failed = fail_every and i % fail_every == fail_every - 1
        strategy.tell(p.trial_id, None if failed else score(SPACE, p.arch))
    return archs


def test_same_seed_same_proposals_and_different_seed_differs() -> None:
    assert drive(OptunaTPE(SPACE, seed=3), 15) == drive(OptunaTPE(SPACE, seed=3), 15)
    assert drive(OptunaTPE(SPACE, seed=3), 15) != drive(OptunaTPE(SPACE, seed=4), 15)


def test_asynchronous_asks_and_failures() -> None:
    tpe = OptunaTPE(SPACE, seed=0, n_startup_trials=2)
    first, second = tpe.ask(), tpe.ask()  # two workers ask before any result
    assert (first.trial_id, second.trial_id) == (0, 1)
    tpe.tell(1, math.nan)
    tpe.tell(0, 2.0)
    assert tpe.num_failed == 1 and tpe.best is not None and tpe.best[1] == 2.0
    with pytest.raises(KeyError):
        tpe.tell(0, 1.0)
    from optuna.trial import TrialState

    states = [t.state for t in tpe.study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL]


def test_state_dict_is_json_and_resumes_identically_with_pending_proposals() -> None:
    a = OptunaTPE(SPACE, seed=1, n_startup_trials=3)
    drive(a, 8, fail_every=4)
    pending = a.ask()
    state = json.loads(json.dumps(a.state_dict()))
    b = OptunaTPE(SPACE, seed=99)
    b.load_state_dict(state)
    assert b.pending == a.pending and b.seed == 1
    for s in (a, b):
        s.tell(pending.trial_id, 1.0)
    assert drive(a, 6) == drive(b, 6)


def test_ordinal_variables_use_ordered_integer_distributions() -> None:
    space = MacroSpace(input_shape=(1, 8, 8), num_classes=10)
    tpe = OptunaTPE(space, seed=0)
    from optuna.distributions import CategoricalDistribution, IntDistribution

    for var in space.variables:
        expected = IntDistribution if var.ordinal else CategoricalDistribution
        assert isinstance(tpe.distributions[var.name], expected)
    arch = tpe.ask().arch
    space.to_graph(arch).validate()


def test_tpe_finds_the_synthetic_optimum_sooner_than_random() -> None:
    def best_after(strategy: object, n: int) -> float:
        best = -1.0
        for _ in range(n):
            p = strategy.ask()  # type: ignore[attr-defined]
            s = score(SPACE, p.arch)
            strategy.tell(p.trial_id, s)  # type: ignore[attr-defined]
            best = max(best, s)
        return best

    tpe = np.mean([best_after(OptunaTPE(SPACE, seed=s), 40) for s in range(5)])
    rnd = np.mean([best_after(RandomSearch(SPACE, seed=s), 40) for s in range(5)])
    assert tpe > rnd and tpe >= 5.0  # the optimum is 6


@pytest.mark.skipif(not NB201_TABLE.is_file(), reason="NB201 table not available")
def test_tpe_on_the_nb201_table_beats_random_search_at_60_queries() -> None:
    table = NB201Table(NB201_TABLE)

    def mean_valid(name: str) -> float:
        runs = [run_protocol(*strategy_ask_tell(make_strategy(name, SPACE, seed=s)), table, time_budget=1e9,
                             max_queries=60) for s in range(10)]
        return float(np.mean([r.best_valid_12ep for r in runs]))

    assert mean_valid("tpe") > mean_valid("random") + 0.2


@pytest.mark.skipif(not NB201_TABLE.is_file(), reason="NB201 table not available")
def test_cli_benchmark_mode_with_tpe_resumes(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from nas.cli import main

    argv = ["search", "--strategy", "tpe", "--benchmark", "nb201", "--table", str(NB201_TABLE),
            "--time-budget", "3000", "--run-dir", str(tmp_path)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0  # resumed from the journal (replaying TPE's asks and tells): same result
    assert capsys.readouterr().out.splitlines()[:3] == first.splitlines()[:3]
