"""nas.objective: hard limits (params, FLOPs before training; latency after), penalty arithmetic,
validation, dict round trip and the one-line description."""

from __future__ import annotations

import json

import pytest

from nas.objective import Objective
from search_spaces.analysis import measure
from search_spaces.spaces.macro import MacroArch, MacroSpace, StageChoice

METRICS = {"val_acc": 0.8, "best_val_acc": 0.85, "train_acc": 0.9}


def test_default_is_the_metric_itself() -> None:
    objective = Objective().validate()
    assert objective.check_limits(10**9, 10**12) is None
    assert objective.score(METRICS, 10**9, 10**12) == 0.8
    assert objective.evaluate(METRICS, 10**9, 10**12) == (0.8, None)
    assert Objective(metric="best_val_acc").evaluate(METRICS, 1, 1) == (0.85, None)
    assert not objective.needs_latency


def test_params_and_flops_limits() -> None:
    objective = Objective(max_params=1000, max_mflops=2.5).validate()
    assert objective.check_limits(1000, 2_500_000) is None  # limits are inclusive
    reason = objective.check_limits(1001, 100)
    assert reason is not None and "params" in reason and "1,001" in reason and "1,000" in reason
    reason = objective.check_limits(10, 2_500_001)
    assert reason is not None and "FLOPs" in reason and "2.5" in reason
    score, reason = objective.evaluate(METRICS, 5000, 100)
    assert score is None and "params" in reason


def test_limits_on_a_real_graph() -> None:
    space = MacroSpace(input_shape=(1, 8, 8), num_classes=10, num_stages=1, widths=(8,), depths=(1,),
                       kernels=(3,), stem_width=8, blocks=("conv",))
    cost = measure(space.to_graph(MacroArch((StageChoice("conv", 8, 1, 3, False),))))
    assert Objective(max_params=cost.params, max_mflops=cost.flops / 1e6).check_limits(cost.params, cost.flops) is None
    assert "params" in Objective(max_params=cost.params - 1).check_limits(cost.params, cost.flops)
    assert "FLOPs" in Objective(max_mflops=cost.flops / 2e6).check_limits(cost.params, cost.flops)


def test_penalty_arithmetic() -> None:
    objective = Objective(params_penalty=0.1, flops_penalty=0.5, latency_penalty=0.01).validate()
    assert objective.needs_latency
    # 2 M params * 0.1 + 3 GFLOP * 0.5 + 5 ms * 0.01
    assert objective.penalty(2_000_000, 3_000_000_000, 5.0) == pytest.approx(0.2 + 1.5 + 0.05)
    assert objective.score(METRICS, 2_000_000, 3_000_000_000, 5.0) == pytest.approx(0.8 - 1.75)
    score, reason = objective.evaluate(METRICS, 500_000, 0, 2.0)
    assert reason is None and score == pytest.approx(0.8 - 0.05 - 0.02)
    with pytest.raises(ValueError, match="latency"):
        objective.score(METRICS, 1, 1)  # a latency penalty needs a measured latency
    assert Objective(params_penalty=0.1).score(METRICS, 1_000_000, 10**12, None) == pytest.approx(0.7)


def test_latency_limit() -> None:
    objective = Objective(max_latency_ms=5.0).validate()
    assert objective.needs_latency
    assert objective.evaluate(METRICS, 1, 1, 5.0) == (0.8, None)
    score, reason = objective.evaluate(METRICS, 1, 1, 5.01)
    assert score is None and "latency" in reason and "5.01" in reason
    assert objective.evaluate(METRICS, 1, 1, float("nan"))[0] is None
    with pytest.raises(ValueError, match="latency"):
        objective.evaluate(METRICS, 1, 1, None)
    assert Objective().check_latency(None) is None


def test_missing_or_non_finite_metric() -> None:
    with pytest.raises(ValueError, match="'val_acc' missing"):
        Objective().evaluate({"train_acc": 0.5}, 1, 1)
    score, reason = Objective().evaluate({"val_acc": float("nan")}, 1, 1)
    assert score is None and "non-finite" in reason


@pytest.mark.parametrize("field, value", [
    ("metric", "train_loss"), ("max_params", 0), ("max_params", -5), ("max_params", 1.5), ("max_params", True),
    ("max_mflops", 0.0), ("max_mflops", -1.0), ("max_mflops", float("inf")), ("max_latency_ms", -2.0),
    ("params_penalty", -0.1), ("flops_penalty", float("nan")), ("latency_penalty", -1), ("latency_penalty", "1"),
])
def test_validation_names_the_field(field, value) -> None:
    with pytest.raises(ValueError, match=rf"Objective\.{field} "):
        Objective(**{field: value}).validate()


def test_dict_round_trip() -> None:
    objective = Objective(metric="best_val_acc", max_params=250_000, max_mflops=12.5, max_latency_ms=3.0,
                          params_penalty=0.02, flops_penalty=0.1, latency_penalty=0.001)
    assert Objective.from_dict(json.loads(json.dumps(objective.to_dict()))) == objective
    assert Objective.from_dict({}) == Objective()
    with pytest.raises(ValueError, match="unknown field"):
        Objective.from_dict({"max_flops": 3})
    with pytest.raises(ValueError, match=r"Objective\.max_params"):
        Objective.from_dict({"max_params": -1})


def test_describe() -> None:
    assert Objective().describe() == "maximise val_acc; no limits"
    text = Objective(max_params=1_000_000, max_latency_ms=5, params_penalty=0.01).describe()
    assert text == "maximise val_acc - 0.01/M params; params <= 1,000,000, latency <= 5 ms"
    text = Objective(metric="best_val_acc", max_mflops=50, flops_penalty=0.2, latency_penalty=0.001).describe()
    assert text == "maximise best_val_acc - 0.2/GFLOP - 0.001/ms latency; FLOPs <= 50 M"
    assert "\n" not in text
