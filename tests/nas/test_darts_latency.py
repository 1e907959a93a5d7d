"""DARTS's differentiable latency term: the table's rows against the network's wiring, its gradient,
searches that trade accuracy for latency, the option's validation, and the averaged table of a
data-parallel search."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_darts import OneEdgeAdapter, OneEdgeSpace, oriented_data, tiny_darts
from test_darts_distributed import run_replicas
from torch import nn

import nas.darts.latency as latency_module
from nas.cli import build_parser, given_settings
from nas.darts import DartsConfig, darts_search
from nas.darts.distributed import ReplicaGroup
from nas.darts.latency import LatencyTable, latency_table
from nas.darts.supernet import MixedOp
from search_spaces.errors import InputError
from search_spaces.spaces.darts import DartsSpace


def fake_ms(op: nn.Module, input_shape: tuple[int, ...], device: Any, repeats: int = 20) -> float:
    """A deterministic 'latency' in (0, 1) that depends on the op's structure and input shape only."""
    digest = hashlib.sha256(f"{op!r}{tuple(input_shape)}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2 ** 32


def parameters_ms(op: nn.Module, input_shape: tuple[int, ...], device: Any, repeats: int = 20) -> float:
    """Ops with weights cost 10 ms, the others 1 ms."""
    return 10.0 if any(True for _ in op.parameters()) else 1.0


def test_rows_sum_their_mixed_ops_over_the_cells_that_share_them(monkeypatch: pytest.MonkeyPatch) -> None:
    net = tiny_darts(dtype=torch.float32)  # 3 cells: normal, reduce, reduce
    monkeypatch.setattr(latency_module, "measure_latency_ms", fake_ms)
    shapes: dict[MixedOp, tuple[int, ...]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args: shapes.__setitem__(mod, tuple(args[0].shape)))
             for m in net.modules() if isinstance(m, MixedOp)]
    with torch.no_grad():
        net.eval()(torch.randn(1, 3, 8, 8))
    for hook in hooks:
        hook.remove()
    expected = {name: torch.zeros(14, 8, dtype=torch.float64) for name in ("normal", "reduce")}
    for cell in net.cells:  # the wiring, known here: edge k of a cell is row k of its type's alphas
        for k, edge in enumerate(cell.edges):
            for o, op in enumerate(edge.ops):
                expected["reduce" if cell.reduction else "normal"][k, o] += fake_ms(op, shapes[edge][1:], "cpu")
    alphas_before = {k: v.detach().clone() for k, v in net.alphas.items()}
    table = latency_table(net.train(), (3, 8, 8), "cpu")
    for name in expected:
        torch.testing.assert_close(table.costs[name], expected[name])
    assert net.training and "arch_weights" not in vars(net)  # left as it was
    assert all(torch.equal(alphas_before[k], v) for k, v in net.alphas.items())
    stored = json.loads(json.dumps(table.to_dict()))["normal"][0]
    assert stored == pytest.approx(expected["normal"][0].tolist(), abs=1e-6)


def test_measured_table_is_positive_and_convolutions_cost_more_than_none() -> None:
    table = latency_table(tiny_darts(dtype=torch.float32), (3, 8, 8), "cpu", repeats=5)
    none, sep5 = 0, 6  # PRIMITIVES: none, max_pool, avg_pool, skip, sep_conv_3x3, sep_conv_5x5, ...
    for cost in table.costs.values():
        assert torch.isfinite(cost).all() and (cost > 0).all()
        assert (cost[:, sep5] > cost[:, none]).all()


def test_expected_latency_and_its_gradient_are_the_softmax_weighted_costs() -> None:
    g = torch.Generator().manual_seed(0)
    costs = {"a": torch.rand(3, 4, generator=g, dtype=torch.float64), "b": torch.rand(2, 4, generator=g,
                                                                                      dtype=torch.float64)}
    table = LatencyTable(costs)
    net = tiny_darts()
    net.alphas = nn.ParameterDict({"a": nn.Parameter(torch.randn(3, 4, generator=g, dtype=torch.float64)),
                                   "b": nn.Parameter(torch.randn(2, 4, generator=g, dtype=torch.float64))})
    uniform = sum(float(c.mean(1).sum()) for c in costs.values())
    assert table.uniform_ms() == pytest.approx(uniform)
    value, grads = table.penalty_gradients(net, weight=0.3)
    p = {k: F.softmax(v.detach(), dim=-1) for k, v in net.alphas.items()}
    assert value == pytest.approx(sum(float((p[k] * costs[k]).sum()) for k in costs))
    for (name, cost), grad in zip(costs.items(), grads, strict=True):
        mean = (p[name] * cost).sum(-1, keepdim=True)  # d/dα_o Σ softmax·c = p_o (c_o - Σ p c)
        torch.testing.assert_close(grad, 0.3 / uniform * p[name] * (cost - mean))


def _planted(weight: float, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(latency_module, "measure_latency_ms", parameters_ms)
    x, y = oriented_data(128)
    config = DartsConfig(epochs=10, lr=0.1, batch_size=32, arch_lr=3e-3, augment="none", seed=0,
                         latency_weight=weight)
    return darts_search(OneEdgeSpace(), config, x, y)


def test_a_heavy_latency_weight_trades_the_only_accurate_op_for_a_cheap_one(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap = _planted(20.0, monkeypatch)  # the 3x3 conv alone solves the task (test_darts), but costs 10x
    assert cheap.arch != ("nor_conv_3x3",) and cheap.arch != ("nor_conv_1x1",)
    expected = [r["expected_latency_ms"] for r in cheap.history]
    assert expected[-1] < expected[0] and "latency_table_ms" in cheap.history[0]
    assert cheap.history[0]["latency_table_ms"]["cell"][0][OneEdgeAdapter.ops.index("nor_conv_3x3")] == 10.0
    accurate = _planted(1e-3, monkeypatch)
    assert accurate.arch == ("nor_conv_3x3",)
    assert "latency_table_ms" not in _tiny_history(latency_weight=0.0)


def _tiny_history(**options: Any) -> dict[str, Any]:
    x, y = oriented_data(32)
    config = DartsConfig(epochs=1, batch_size=16, augment="none", seed=0, **options)
    return darts_search(OneEdgeSpace(), config, x, y).history[0]


def test_the_option_is_validated_and_stored_only_when_set() -> None:
    for bad in (-0.1, math.nan, math.inf, "0.1", True):
        with pytest.raises(InputError, match="latency_weight"):
            DartsConfig(latency_weight=bad).validate()  # type: ignore[arg-type]
    assert "latency_weight" not in DartsConfig().to_dict()
    assert DartsConfig.from_dict(DartsConfig(latency_weight=0.2).to_dict()) == DartsConfig(latency_weight=0.2)
    args = build_parser().parse_args(["search", "--strategy", "darts", "--latency-weight", "0.2"])
    assert given_settings(args)["strategy_options"] == {"latency_weight": 0.2}


def _table_on_replica(replicas: ReplicaGroup, out: Path) -> None:
    rank_ms = float(replicas.rank + 1)  # the workers' clocks disagree: 1 ms and 2 ms for every op
    latency_module.measure_latency_ms = lambda *args, **kwargs: rank_ms  # type: ignore[assignment]
    net = tiny_darts(dtype=torch.float32)
    table = latency_table(net, (3, 8, 8), "cpu", replicas=replicas)
    (out / f"rank{replicas.rank}.json").write_text(json.dumps(table.to_dict()))


def test_data_parallel_workers_share_one_averaged_table(tmp_path: Path) -> None:
    out = run_replicas(2, tmp_path, _table_on_replica)
    tables = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert tables[0] == tables[1]
    normal = np.asarray(tables[0]["normal"])  # one normal cell: 1.5 ms per op
    assert np.allclose(normal, 1.5) and np.allclose(np.asarray(tables[0]["reduce"]), 3.0)  # two reduce cells


def test_darts_space_search_logs_the_expected_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(latency_module, "measure_latency_ms", fake_ms)
    x, y = torch.randn(48, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(48) % 4
    config = DartsConfig(epochs=2, batch_size=12, init_channels=4, layers=3, seed=0, latency_weight=1.0, order=2)
    result = darts_search(DartsSpace(num_classes=4, input_shape=(3, 8, 8)), config, x, y)
    assert all(r["expected_latency_ms"] > 0 for r in result.history)
    assert set(result.history[0]["latency_table_ms"]) == {"normal", "reduce"}
