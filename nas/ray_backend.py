"""Trials on Ray Tune: a ``Searcher`` that serves a :class:`~nas.run.SearchRun`, and the trial function.

Ray Tune does the scheduling: resources per trial (``tune.with_resources``; fractional GPUs
allowed), the concurrency limit, early stopping (``ASHAScheduler``), placement on any node of the
cluster. Our Searcher turns each ``suggest`` into ``SearchRun.next_trial`` and each
``on_trial_complete`` into ``SearchRun.finish``, so every proposal and result is journaled.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.progress import Progress
from nas.run import SearchRun

FAILED_SCORE = float("nan")


def trial_function(config: dict[str, Any], data: Any = None) -> None:
    """One trial inside a Ray worker: build the graph, train it, report every epoch.

    The config carries plain data: the space's name and options and the architecture's encoding
    (``space.to_json``), so the graph is rebuilt here rather than shipped through Tune.

    Reports ``score`` (the objective) plus the trainer's metrics each epoch; a failure (exception,
    non-finite loss, out of memory, infeasible latency) is reported as ``failed`` with a reason
    instead of raising, so the search records why and goes on.
    """
    import ray
    from ray import tune

    from nas.objective import Objective
    from nas.trainer import TrainConfig, TrialFailed, device_for, train_and_evaluate
    from search_spaces.analysis import measure
    from search_spaces.spaces import make_space

    context = {"trial": config["trial"], "node": ray.get_runtime_context().get_node_id()}
    objective = Objective.from_dict(config["objective"])
    space = make_space(config["space"], **config["space_options"])
    graph = space.to_graph(space.from_json(config["arch"]))
    device = device_for(config["gpus"])

    def report(metrics: dict[str, Any]) -> None:
        score, reason = objective.evaluate(metrics, params=params, flops=flops, latency_ms=metrics.get("latency_ms"))
        if score is None:
            raise TrialFailed(reason or "objective undefined")
        tune.report({**metrics, **context, "score": score, "failed": False, "device": str(device), "params": params,
                     "flops": flops})

    try:
        params, flops = config.get("params"), config.get("flops")
        if params is None or flops is None:
            cost = measure(graph)
            params, flops = cost.params, cost.flops
        train_and_evaluate(graph, data, TrainConfig.from_dict(config["train"]), device, report,
                           latency_repeats=20 if objective.needs_latency else 0)
    except TrialFailed as err:
        tune.report({**context, "score": FAILED_SCORE, "failed": True, "reason": err.reason})
    except Exception as err:  # a trial must never take the search down
        tune.report({**context, "score": FAILED_SCORE, "failed": True, "reason": f"{type(err).__name__}: {err}"})
    finally:
        if device.type == "cuda":  # actors are reused across trials: hand cached blocks back
            import torch

            torch.cuda.empty_cache()


def _make_searcher(run: SearchRun, base_config: dict[str, Any], progress: Progress) -> Any:
    from ray.tune.search import Searcher

    class JournalSearcher(Searcher):
        """Serves the run's trials to Tune and journals their outcomes."""

        def __init__(self) -> None:
            super().__init__(metric="score", mode="max")
            self.running: dict[str, int] = {}

        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            nxt = run.next_trial()
            progress.update(run, len(self.running))
            if nxt is None:
                return Searcher.FINISHED
            record, (_graph, cost) = nxt
            self.running[trial_id] = record.trial
            measured = {} if cost is None else {"params": cost.params, "flops": cost.flops}
            return {**base_config, "trial": record.trial, "arch": record.arch, **measured}

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                              error: bool = False) -> None:
            trial = self.running.pop(trial_id, None)
            if trial is None:
                return
            if error or result is None:
                where = Path(run.run_dir) / "tune" / "trials" / f"trial_{trial}"
                run.finish(trial, None, reason=f"trial raised or its worker died; see {where}/error.txt")
            elif result.get("failed"):
                run.finish(trial, None, reason=str(result.get("reason", "failed")), metrics=_metrics(result))
            else:
                score = float(result["score"])
                run.finish(trial, score if math.isfinite(score) else None, metrics=_metrics(result))
            progress.update(run, len(self.running))

    return JournalSearcher()


_METRIC_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "epoch_seconds",
                "latency_ms", "node", "device", "params", "flops")


def _metrics(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: result[k] for k in _METRIC_KEYS if k in result}
    if "training_iteration" in result:
        out["epochs_run"] = result["training_iteration"]
    return out


def run_on_ray(run: SearchRun, base_config: dict[str, Any], *, data: Any = None,
               trainable: Callable[..., None] | None = None, cpus_per_trial: float = 1.0,
               gpus_per_trial: float = 0.0, max_concurrent: int | None = None, scheduler: str = "fifo",
               max_epochs: int = 1, address: str | None = None, num_cpus: int | None = None,
               progress: Progress | None = None) -> None:
    """Dispatch ``run``'s trials on Ray Tune until its budget is spent.

    ``address`` joins an existing cluster ("auto" or host:port); otherwise an embedded local Ray
    is started (``num_cpus`` caps it) and shut down at the end. ``data`` goes to the object store
    once (``tune.with_parameters``), not once per trial. ``trainable`` replaces the default trial
    function (benchmarks); it receives the trial config (and ``data`` when given).
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress line replaces Tune's tables
    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    progress = progress or Progress(run.max_trials)
    started_ray = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            # address="local": always a fresh embedded Ray, never a cluster found via RAY_ADDRESS or /tmp/ray
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
        started_ray = True
    try:
        fn = trainable or trial_function
        if data is not None:
            fn = tune.with_parameters(fn, data=data)
        resources = {"cpu": cpus_per_trial, "gpu": gpus_per_trial}
        sched = (ASHAScheduler(time_attr="training_iteration", max_t=max(max_epochs, 1), grace_period=1,
                               reduction_factor=3) if scheduler == "asha" else FIFOScheduler())
        config = {**base_config, "gpus": gpus_per_trial}
        tuner = tune.Tuner(
            tune.with_resources(fn, resources),
            tune_config=tune.TuneConfig(search_alg=_make_searcher(run, config, progress), scheduler=sched,
                                        metric="score", mode="max", num_samples=-1,
                                        max_concurrent_trials=max_concurrent, reuse_actors=True,
                                        trial_dirname_creator=lambda t: f"trial_{t.config.get('trial', t.trial_id)}"),
            run_config=tune.RunConfig(storage_path=str(Path(run.run_dir).resolve() / "tune"), name="trials",
                                      verbose=0, failure_config=tune.FailureConfig(max_failures=0)),
        )
        start = time.time()
        tuner.fit()
        progress.finish(run, time.time() - start)
    finally:
        run.close()
        if started_ray:
            ray.shutdown()
