"""The one dispatcher: every search method's trials on Ray Tune.

A search method is a :class:`TrialSource`: it hands out the Tune config of its next trial
(``next_config``), names the function that runs a trial in a Ray worker (``trainable``), and takes
each intermediate (``on_result``) and final (``on_complete``) outcome. Multi-trial strategies
(ask/tell, :mod:`nas.methods.multi_trial`) and one-shot methods (DARTS, :mod:`nas.methods.base`)
are peers behind it; :func:`dispatch` knows neither.

Ray Tune does the scheduling: resources per trial (``tune.with_resources``; fractional GPUs
allowed), the concurrency limit, early stopping (``ASHAScheduler``), placement on any node of the
cluster. A ``Searcher`` turns each ``suggest`` into ``next_config`` and each completion into
``on_complete``; Tune callbacks given by the user (TensorBoard, MLflow, W&B loggers) are passed on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from nas.progress import Progress
from nas.run import SearchRun
from nas.rundir import trials_dir


class TrialSource(ABC):
    """A search method as the dispatcher sees it (the contract of :func:`dispatch`).

    * ``run``: the journaled run the method records into (progress and budget are read from it).
    * ``trainable()``: the function ``fn(config)`` that runs one trial inside a Ray worker and
      reports with ``ray.tune.report``; it must never raise for a failure of the trial itself
      (report ``failed`` with a ``reason`` instead).
    * ``next_config()``: the Tune config of the next trial, or None when every trial has been
      handed out. Called whenever Tune has room for a trial.
    * ``on_result(config, result)``: every intermediate report (default: nothing).
    * ``on_complete(config, result, error)``: the trial's last report, or ``error`` (a reason)
      when its worker raised or died; exactly once per trial handed out. A trial the scheduler
      stopped before its last epoch (ASHA) has ``result["stopped_early"] = True``; its
      ``training_iteration`` is the number of epochs it reached.

    A config names its trial's directory under ``RUN/tune/trials`` in ``config["dirname"]``.
    """

    run: SearchRun
    reuse_actors: bool = True

    @property
    def finished(self) -> bool:
        """Nothing is left to run (default: the run's budget is spent)."""
        return self.run.finished

    @abstractmethod
    def trainable(self) -> Callable[[dict[str, Any]], None]:
        """The trial function (any data it needs bound, e.g. with ``tune.with_parameters``)."""

    @abstractmethod
    def next_config(self) -> dict[str, Any] | None:
        """Config of the next trial, or None when all are handed out."""

    def on_result(self, config: dict[str, Any], result: dict[str, Any]) -> None:
        """An intermediate report of a running trial."""

    @abstractmethod
    def on_complete(self, config: dict[str, Any], result: dict[str, Any] | None, error: str | None) -> None:
        """A trial ended: its last report, or the reason it crashed."""



def trial_dirname(trial: Any) -> str:
    """A Tune trial's directory name: its config's ``dirname`` (module-level: Tune serialises it)."""
    return str(trial.config.get("dirname") or f"trial_{trial.trial_id}")


def _make_scheduler(scheduler: str, max_epochs: int) -> Any:
    """Tune's FIFO scheduler, or ASHA on ``training_iteration`` that records which trials it stops
    before ``max_epochs`` (``stopped_early``: Tune's result does not say so)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    if scheduler != "asha":
        return FIFOScheduler()
    max_t = max(max_epochs, 1)

    class RecordingASHA(ASHAScheduler):
        def __init__(self) -> None:
            super().__init__(time_attr="training_iteration", max_t=max_t, grace_period=1, reduction_factor=3)
            self.stopped_early: set[str] = set()

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP and result.get("training_iteration", max_t) < max_t:
                self.stopped_early.add(trial.trial_id)
            return decision

    return RecordingASHA()


def _make_searcher(source: TrialSource, progress: Progress, scheduler: Any) -> Any:
    from ray.tune.search import Searcher

    class SourceSearcher(Searcher):
        """Serves the source's trials to Tune and hands their outcomes back."""

        def __init__(self) -> None:
            super().__init__(metric="score", mode="max")
            self.running: dict[str, dict[str, Any]] = {}

        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            config = source.next_config()
            progress.update(source.run, len(self.running))
            if config is None:
                return Searcher.FINISHED
            self.running[trial_id] = config
            return config

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            config = self.running.get(trial_id)
            if config is not None:
                source.on_result(config, result)

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                              error: bool = False) -> None:
            config = self.running.pop(trial_id, None)
            if config is None:
                return
            if error or result is None:
                where = trials_dir(source.run.run_dir) / str(config.get("dirname", ""))
                source.on_complete(config, None, f"trial raised or its worker died; see {where}/error.txt")
            else:
                if trial_id in getattr(scheduler, "stopped_early", ()):
                    result = {**result, "stopped_early": True}
                source.on_complete(config, result, None)
            progress.update(source.run, len(self.running))

    return SourceSearcher()


def dispatch(source: TrialSource, *, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
             max_concurrent: int | None = None, scheduler: str = "fifo", max_epochs: int = 1,
             address: str | None = None, num_cpus: int | None = None, progress: Progress | None = None,
             callbacks: Sequence[Any] = ()) -> None:
    """Run ``source``'s trials on Ray Tune until it has handed out all of them and all have ended.

    ``address`` joins an existing cluster ("auto" or host:port); otherwise an embedded local Ray
    is started (``num_cpus`` caps it) and shut down at the end. At most ``max_concurrent`` trials
    run at once (default: as many as the cluster's CPUs/GPUs fit when the search starts). ``scheduler="asha"`` stops
    trials early on their ``training_iteration`` (``max_epochs`` is the longest). ``callbacks``:
    Ray Tune callbacks (e.g. ``ray.tune.logger.TBXLoggerCallback``). The run is closed at the end.
    """
    from ray import tune

    progress = progress or Progress(source.run.max_trials)
    resources = {"cpu": cpus_per_trial, "gpu": gpus_per_trial}
    sched = _make_scheduler(scheduler, max_epochs)
    storage = trials_dir(source.run.run_dir)
    try:
        with ray_session(address, num_cpus):
            # with a custom Searcher Tune keeps at most max_concurrent_trials pending (else 1: trials would
            # run one at a time); our strategies propose for every free worker, so allow what fits
            concurrent = max_concurrent or trial_capacity(cpus_per_trial, gpus_per_trial)
            tuner = tune.Tuner(
                tune.with_resources(source.trainable(), resources),
                tune_config=tune.TuneConfig(
                    search_alg=_make_searcher(source, progress, sched), scheduler=sched, metric="score", mode="max",
                    num_samples=-1, max_concurrent_trials=concurrent, reuse_actors=source.reuse_actors,
                    trial_dirname_creator=trial_dirname),
                run_config=tune.RunConfig(storage_path=str(storage.parent), name=storage.name, verbose=0,
                                          callbacks=list(callbacks),
                                          failure_config=tune.FailureConfig(max_failures=0)),
            )
            start = time.time()
            tuner.fit()
            progress.finish(source.run, time.time() - start)
    finally:
        source.run.close()


def trial_capacity(cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials of these resources the connected Ray cluster can run at once (at least 1)."""
    import ray

    resources = ray.cluster_resources()
    fits = [int(resources.get(key, 0.0) // need) for key, need in (("CPU", cpus_per_trial), ("GPU", gpus_per_trial))
            if need > 0]
    return max(1, min(fits)) if fits else 1


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
