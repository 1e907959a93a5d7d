"""nas.Experiment without Ray: its configuration from Python arguments, bad input, and a table-lookup
run's Result (the Ray paths are exercised by test_readme.py and test_search_e2e.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from datapaths import NB201_TABLE

import nas
from nas.strategies import RandomSearch
from search_spaces.errors import InputError
from search_spaces.spaces.nb201 import NB201Space


def test_python_arguments_resolve_like_the_cli() -> None:
    exp = nas.Experiment(space="nb201", evaluator=nas.Trainer(dataset="digits", epochs=2, limit=100),
                         strategy="evolution", trials=5, strategy_options={"population_size": 4},
                         objective={"max_params": 10_000}, run_dir="r")
    c = exp.config
    assert c.space == "nb201" and c.trials == 5 and c.train.epochs == 2 and c.data.limit == 100
    assert c.strategy_options == {"population_size": 4, "sample_size": 3, "tournament_replacement": False}
    assert c.objective.max_params == 10_000 and exp.trials_explicit


def test_instances_are_recorded_by_class() -> None:
    space = NB201Space()
    exp = nas.Experiment(space=space, strategy=RandomSearch(space, seed=7), evaluator=lambda model, trial: 0.5)
    c = exp.config
    assert c.seed == 7 and c.data is None and c.train is None and c.evaluator.endswith("<lambda>")
    assert c.extras == {"strategy_class": "nas.strategies.random_search.RandomSearch",
                        "space_class": "search_spaces.spaces.nb201.NB201Space"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"space": 3}, "space must be a space name or a SearchSpace instance"),
    ({"strategy": object()}, "strategy must be a name or a Strategy instance"),
    ({"resources": {"tpu": 1}}, "resources: unknown key(s) ['tpu']"),
    ({"resources": {"cpu": 0}}, "a trial needs some resources"),
    ({"strategy": RandomSearch(NB201Space()), "strategy_options": {"x": 1}}, "a Strategy instance is already built"),
    ({"trials": 0}, "trials must be an integer >= 1"),
])
def test_bad_arguments_get_one_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        nas.Experiment(**kwargs)
    assert message in str(info.value)


def test_trainer_refuses_unknown_options() -> None:
    with pytest.raises(InputError, match=r"Trainer: unknown option\(s\) \['epoch'\]"):
        nas.Trainer(epoch=3)


@pytest.mark.skipif(not NB201_TABLE.is_file(), reason="NAS-Bench-201 table missing")
def test_benchmark_experiment_result(tmp_path: Path) -> None:
    exp = nas.Experiment(strategy="random", benchmark="nb201", table=str(NB201_TABLE), trials=30,
                         run_dir=tmp_path / "run", seed=1)
    result = exp.run()
    assert len(result.trials) == 30 and result.best is not None and result.protocol.queries == 30
    assert result.best.score == max(t.score for t in result.trials if t.score is not None)
    assert result.leaderboard(3)[0] == result.best and isinstance(result.best.arch, tuple)
    again = nas.Experiment(strategy="random", benchmark="nb201", table=str(NB201_TABLE), trials=30,
                           run_dir=tmp_path / "run", seed=1).run()  # resume of a finished run: same result
    assert again.best == result.best
