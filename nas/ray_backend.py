"""Trials on Ray Tune: a ``Searcher`` that serves a :class:`~nas.run.SearchRun`, and the trial function.

Ray Tune does the scheduling: resources per trial (``tune.with_resources``; fractional GPUs
allowed), the concurrency limit, early stopping (``ASHAScheduler``), placement on any node of the
cluster. Our Searcher turns each ``suggest`` into ``SearchRun.next_trial`` and each
``on_trial_complete`` into ``SearchRun.finish``, so every proposal and result is journaled.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nas.progress import Progress
from nas.run import SearchRun

FAILED_SCORE = float("nan")
TRIAL_WEIGHTS = "weights.safetensors"  # a trial's latest weights, in its Tune trial directory


class TrialWeights:
    """Keeps a trial's latest trained weights in ``trial_dir/weights.safetensors``.

    :meth:`save` is the trainer's ``on_epoch_end`` hook: it runs after every epoch, *before* that
    epoch's report (a scheduler may stop the trial at any report, and nothing after it runs), and
    atomically replaces the file with the module's state dict (CPU copies; metadata: the graph's
    canonical ``arch_hash`` and the ``epoch``). :meth:`fields` gives the report entries: ``weights``
    (the file's path) once a save succeeded, or ``weights_error`` when the latest save failed, which
    does not fail the trial.
    """

    def __init__(self, trial_dir: str | Path, arch_hash: str) -> None:
        self.path = Path(trial_dir) / TRIAL_WEIGHTS
        self.arch_hash = arch_hash
        self.epoch: int | None = None
        self.error: str | None = None

    def save(self, state: Any) -> None:
        """Save ``state.model`` (a state dict) as the weights after epoch ``state.epoch``."""
        from nas.export.weights import save_weights

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            save_weights(state.model, self.path, arch_hash=self.arch_hash, extra={"epoch": str(state.epoch)})
        except Exception as err:  # e.g. a full disk: the trial's result still counts
            self.error = f"could not save the weights after epoch {state.epoch}: {type(err).__name__}: {err}"
            return
        self.epoch, self.error = state.epoch, None

    def fields(self) -> dict[str, Any]:
        if self.error is not None:
            return {"weights_error": self.error}
        return {} if self.epoch is None else {"weights": str(self.path)}


def trial_function(config: dict[str, Any], data: Any = None) -> None:
    """One trial inside a Ray worker: build the graph, train it, report every epoch.

    The config carries plain data: the space's name and options and the architecture's encoding
    (``space.to_json``), so the graph is rebuilt here rather than shipped through Tune.

    The weights after each epoch are saved to ``weights.safetensors`` in the trial's directory
    (``config["trials_dir"]/trial_<id>``, the Tune trial directory in the run's storage) before
    that epoch's report, whose ``weights`` entry names the file (:class:`TrialWeights`).

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
    # the trial's directory in the run's storage; tune.get_context().get_trial_dir() is a staging
    # directory under Ray's session temp dir, not copied to the storage (sync_artifacts is off)
    trial_dir = (Path(config["trials_dir"]) / f"trial_{config['trial']}" if config.get("trials_dir")
                 else tune.get_context().get_trial_dir())
    weights = TrialWeights(trial_dir, graph.canonical_hash())

    def report(metrics: dict[str, Any]) -> None:
        score, reason = objective.evaluate(metrics, params=params, flops=flops, latency_ms=metrics.get("latency_ms"))
        if score is None:
            raise TrialFailed(reason or "objective undefined")
        tune.report({**metrics, **context, "score": score, "failed": False, "device": str(device), "params": params,
                     "flops": flops, **weights.fields()})

    try:
        params, flops = config.get("params"), config.get("flops")
        if params is None or flops is None:
            cost = measure(graph)
            params, flops = cost.params, cost.flops
        train_and_evaluate(graph, data, TrainConfig.from_dict(config["train"]), device, report,
                           latency_repeats=20 if objective.needs_latency else 0, on_epoch_end=weights.save)
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
                "latency_ms", "node", "device", "params", "flops", "weights", "weights_error")


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
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    progress = progress or Progress(run.max_trials)
    fn = trainable or trial_function
    if data is not None:
        fn = tune.with_parameters(fn, data=data)
    resources = {"cpu": cpus_per_trial, "gpu": gpus_per_trial}
    sched = (ASHAScheduler(time_attr="training_iteration", max_t=max(max_epochs, 1), grace_period=1,
                           reduction_factor=3) if scheduler == "asha" else FIFOScheduler())
    trials_dir = Path(run.run_dir).resolve() / "tune" / "trials"  # storage_path / name below
    config = {**base_config, "gpus": gpus_per_trial, "trials_dir": str(trials_dir)}
    try:
        with ray_session(address, num_cpus):
            tuner = tune.Tuner(
                tune.with_resources(fn, resources),
                tune_config=tune.TuneConfig(
                    search_alg=_make_searcher(run, config, progress), scheduler=sched, metric="score", mode="max",
                    num_samples=-1, max_concurrent_trials=max_concurrent, reuse_actors=True,
                    trial_dirname_creator=lambda t: f"trial_{t.config.get('trial', t.trial_id)}"),
                run_config=tune.RunConfig(storage_path=str(trials_dir.parent), name=trials_dir.name,
                                          verbose=0, failure_config=tune.FailureConfig(max_failures=0)),
            )
            start = time.time()
            tuner.fit()
            progress.finish(run, time.time() - start)
    finally:
        run.close()


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Ray for the duration of the block: join ``address`` ("auto" or host:port) or start an
    embedded local Ray (``num_cpus`` caps it) that is shut down afterwards; an already
    initialised Ray (tests) is used as it is and left running."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress line replaces Tune's tables
    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
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
        yield
    finally:
        if started_ray:
            ray.shutdown()

