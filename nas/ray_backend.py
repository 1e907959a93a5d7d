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
import signal
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from nas.progress import Progress
from nas.run import SearchRun
from nas.rundir import trials_dir
from search_spaces.errors import InputError

CONNECT_TIMEOUT_S = 10.0
"""How long ``--address`` may take to accept a TCP connection before the search is refused."""
LAUNCHER_RESOURCES = {"cpu": 0.0, "memory": 1.0}
"""What a trial that runs on Ray Train workers reserves for itself: one byte of memory (Tune wants a
non-empty request); its workers hold the per-trial resources."""


class SearchInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM ended the search after the journal settled; rerunning resumes it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Interrupt:
    """Turns SIGINT / SIGTERM into a graceful stop: the first signal stops dispatching and ends the
    running trials (they stay pending in the journal and run again on resume); a second one
    raises at once. Handlers are installed only in the main thread and restored afterwards."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.fatal: InputError | None = None  # an outcome that must stop the search (Tune swallows a raise there)

    @property
    def stopping(self) -> bool:
        return self.signum is not None or self.fatal is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise SearchInterrupted(signum)
        self.signum = signum

    @contextlib.contextmanager
    def catching(self) -> Iterator[Interrupt]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _make_stopper(interrupt: Interrupt) -> Any:
    from ray.tune import Stopper

    class InterruptStopper(Stopper):
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return interrupt.stopping

    return InterruptStopper()


class TrialSource(ABC):
    """A search method as the dispatcher sees it (the contract of :func:`dispatch`).

    * ``run``: the journaled run the method records into (progress and budget are read from it).
    * ``trainable()``: the function ``fn(config)`` that runs one trial inside a Ray worker and
      reports with ``ray.tune.report``; it must never raise for a failure of the trial itself
      (report ``failed`` with a ``reason`` instead).
    * ``next_config()``: the Tune config of the next trial, or None when every trial has been
      handed out. Called whenever Tune has room for a trial.
    * ``on_result(config, result)``: every intermediate report (default: nothing).
    * ``on_complete(config, result, error, infrastructure=False)``: the trial's last report, or
      ``error`` (a reason) when it could not finish; exactly once per trial handed out. A trial
      the scheduler stopped before its last epoch (ASHA) has ``result["stopped_early"] = True``;
      its ``training_iteration`` is the number of epochs it reached. ``infrastructure=True``: the
      trial's worker or node died in every attempt (not the architecture's fault: do not cache
      it against the architecture).
    * ``on_retry(config, reason, attempt)``: the trial's worker or node died and the dispatcher
      runs the same config again (attempt 1, 2, ... up to ``max_retries``; with ``resume_from``
      set to its last checkpoint); default: nothing.
    * ``on_checkpoint(config, uri, epoch)``: Tune persisted a checkpoint of the trial (after
      ``epoch``) to the run's storage (``uri``: a local path or a cloud URI); default: nothing. The last checkpoint also
      comes with the final result as ``result["checkpoint"]``.

    A config names its trial's directory under ``RUN/tune/trials`` in ``config["dirname"]``.

    ``workers_per_trial``: N > 1 when a trial runs on N Ray Train workers, each with the per-trial
    resources (a data-parallel DARTS search); the trial itself then reserves only
    :data:`LAUNCHER_RESOURCES`, and the cluster must be able to place the N workers.
    """

    run: SearchRun
    reuse_actors: bool = True
    workers_per_trial: int = 1

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
    def on_complete(self, config: dict[str, Any], result: dict[str, Any] | None, error: str | None,
                    infrastructure: bool = False) -> None:
        """A trial ended: its last report, or the reason it could not finish."""

    def on_retry(self, config: dict[str, Any], reason: str, attempt: int) -> None:
        """The trial's worker died; the same config runs again (``attempt`` counts from 1)."""

    def on_checkpoint(self, config: dict[str, Any], uri: str, epoch: int | None = None) -> None:
        """A checkpoint of the trial (after ``epoch``, when reported) is in the run's storage at ``uri``."""



def trial_dirname(trial: Any) -> str:
    """A Tune trial's directory name: its config's ``dirname`` (module-level: Tune serialises it)."""
    return str(trial.config.get("dirname") or f"trial_{trial.trial_id}")


def _make_scheduler(scheduler: str, max_epochs: int) -> Any:
    """Tune's FIFO scheduler, or ASHA on the reported ``epoch`` that records which trials it stops
    before ``max_epochs`` (``stopped_early``: Tune's result does not say so)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    if scheduler != "asha":
        return FIFOScheduler()
    max_t = max(max_epochs, 1)

    class RecordingASHA(ASHAScheduler):
        # rungs on the reported epoch, not Tune's report count: a trial that runs again continues
        # after its checkpointed epoch
        def __init__(self) -> None:
            super().__init__(time_attr="epoch", max_t=max_t, grace_period=1, reduction_factor=3)
            self.stopped_early: set[str] = set()

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP and result.get("epoch", max_t) < max_t:
                self.stopped_early.add(trial.trial_id)
            return decision

    return RecordingASHA()


def _make_watchdog(timeout: float | None, timed_out: set[str]) -> Any:
    """A Tune callback that kills the worker of a trial running longer than ``timeout`` seconds (a
    stalled trial never reports, so no Tune stopper sees it) and records its Tune id in ``timed_out``."""
    import ray
    from ray.tune import Callback

    class Watchdog(Callback):
        def __init__(self) -> None:
            self.started: dict[str, float] = {}

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.started[trial.trial_id] = time.monotonic()

        def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
            if timeout is None:
                return
            now = time.monotonic()
            for trial in trials:
                start = self.started.get(trial.trial_id)
                if start is None or trial.status != "RUNNING" or trial.trial_id in timed_out or now - start < timeout:
                    continue
                actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
                if actor is not None:
                    timed_out.add(trial.trial_id)
                    ray.kill(actor, no_restart=True)

    return Watchdog()


def checkpoint_uri(checkpoint: Any) -> str:
    """A Tune checkpoint's location: its local path, or ``scheme://path`` on a cloud filesystem."""
    fs = getattr(checkpoint, "filesystem", None)
    kind = getattr(fs, "type_name", "local")
    if kind in ("local", "mock"):
        return str(checkpoint.path)
    return f"{ {'gcs': 'gs'}.get(kind, kind)}://{checkpoint.path}"


def _make_checkpoint_log(latest: dict[str, str], searcher: Any) -> Any:
    """A Tune callback that records each trial's latest persisted checkpoint (``latest``, by Tune trial
    id) and tells the searcher."""
    from ray.tune import Callback

    class CheckpointLog(Callback):
        def __init__(self) -> None:
            self.epoch: dict[str, int] = {}

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                            **info: Any) -> None:
            if isinstance(result.get("epoch"), int):
                self.epoch[trial.trial_id] = result["epoch"]

        def on_checkpoint(self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any) -> None:
            latest[trial.trial_id] = uri = checkpoint_uri(checkpoint)
            searcher.checkpointed(trial.trial_id, uri, self.epoch.get(trial.trial_id))

    return CheckpointLog()


def _make_searcher(source: TrialSource, progress: Progress, scheduler: Any, interrupt: Interrupt,
                   max_retries: int, timeout: float | None, timed_out: set[str], latest: dict[str, str]) -> Any:
    from ray.tune.search import Searcher

    class SourceSearcher(Searcher):
        """Serves the source's trials to Tune, runs a trial whose worker died again (up to
        ``max_retries`` times) and hands the outcomes back."""

        def __init__(self) -> None:
            super().__init__(metric="score", mode="max")
            self.running: dict[str, dict[str, Any]] = {}
            self.again: deque[dict[str, Any]] = deque()  # configs to run again after a worker death
            self.attempts: Counter[str] = Counter()

        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            if interrupt.stopping:
                return Searcher.FINISHED
            config = self.again.popleft() if self.again else source.next_config()
            progress.update(source.run, len(self.running))
            if config is None:  # everything handed out; a running trial may still need a retry
                return None if self.running else Searcher.FINISHED
            self.running[trial_id] = config
            return config

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            config = self.running.get(trial_id)
            if config is not None:
                source.on_result(config, result)

        def checkpointed(self, trial_id: str, uri: str, epoch: int | None) -> None:
            config = self.running.get(trial_id)
            if config is not None and not interrupt.stopping:
                source.on_checkpoint(config, uri, epoch)

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                              error: bool = False) -> None:
            config = self.running.pop(trial_id, None)
            if config is None or interrupt.stopping:
                return  # interrupted: the trial stays pending in the journal and runs again on resume
            try:
                self._complete(trial_id, config, result, error)
            except InputError as err:  # e.g. a full disk, an evaluator that never reports an objective
                interrupt.fatal = err  # Tune would log and swallow it: stop the search and raise it after
            progress.update(source.run, len(self.running))

        def _complete(self, trial_id: str, config: dict[str, Any], result: dict[str, Any] | None,
                      error: bool) -> None:
            if trial_id in timed_out:
                source.on_complete(config, None, f"stalled: still running after --trial-timeout {timeout:g} s; "
                                   "ended by the watchdog")
            elif error or result is None:
                where = trials_dir(source.run.run_dir) / str(config.get("dirname", ""))
                reason = f"its worker or node died (see {where}/error.txt)"
                key = str(config.get("dirname"))
                if self.attempts[key] < max_retries:
                    self.attempts[key] += 1
                    source.on_retry(config, reason, self.attempts[key])
                    if trial_id in latest:  # continue from the last checkpoint
                        config = {**config, "resume_from": latest[trial_id]}
                    self.again.append(config)
                else:
                    source.on_complete(config, None, f"{reason}; {self.attempts[key] + 1} attempt(s)",
                                       infrastructure=True)
            else:
                if trial_id in getattr(scheduler, "stopped_early", ()):
                    result = {**result, "stopped_early": True}
                if trial_id in latest:
                    result = {**result, "checkpoint": latest[trial_id]}
                source.on_complete(config, result, None)

    return SourceSearcher()


def dispatch(source: TrialSource, *, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
             max_concurrent: int | None = None, scheduler: str = "fifo", max_epochs: int = 1,
             address: str | None = None, num_cpus: int | None = None, progress: Progress | None = None,
             callbacks: Sequence[Any] = (), max_retries: int = 2, trial_timeout: float | None = None,
             storage: str | None = None) -> None:
    """Run ``source``'s trials on Ray Tune until it has handed out all of them and all have ended.

    ``address`` joins an existing cluster ("auto" or host:port); otherwise an embedded local Ray
    is started (``num_cpus`` caps it) and shut down at the end. At most ``max_concurrent`` trials
    run at once (default: as many as the cluster's CPUs/GPUs fit when the search starts). ``scheduler="asha"`` stops
    trials early on their ``training_iteration`` (``max_epochs`` is the longest). ``callbacks``:
    Ray Tune callbacks (e.g. ``ray.tune.logger.TBXLoggerCallback``). A trial whose worker or node
    dies runs again up to ``max_retries`` times; one running longer than ``trial_timeout`` seconds is
    ended and recorded as failed. SIGINT / SIGTERM stop the search gracefully (:class:`Interrupt`,
    then :class:`SearchInterrupted`). ``storage``: where Tune persists the trials' checkpoints and
    logs (a filesystem path every node sees, or a cloud URI such as ``s3://bucket/prefix``; default
    ``RUN/tune``, right for one machine). The run is closed at the end.
    """
    from ray import tune

    progress = progress or Progress(source.run.max_trials)
    workers = source.workers_per_trial
    resources = {"cpu": cpus_per_trial, "gpu": gpus_per_trial} if workers == 1 else dict(LAUNCHER_RESOURCES)
    sched = _make_scheduler(scheduler, max_epochs)
    if storage is None:
        storage_path, name = str(trials_dir(source.run.run_dir).parent), trials_dir(source.run.run_dir).name
    else:  # one directory per run in the shared store
        storage_path = storage if "://" in storage else str(Path(storage).expanduser().resolve())
        name = f"{source.run.run_dir.resolve().name}-trials"
    interrupt = Interrupt()
    timed_out: set[str] = set()
    latest: dict[str, str] = {}
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours (Interrupt) stops the run and says so
    try:
        with ray_session(address, num_cpus), interrupt.catching():
            check_resources(cpus_per_trial, gpus_per_trial, workers)
            # with a custom Searcher Tune keeps at most max_concurrent_trials pending (else 1: trials would
            # run one at a time); our strategies propose for every free worker, so allow what fits
            concurrent = max_concurrent or trial_capacity(cpus_per_trial, gpus_per_trial, workers)
            searcher = _make_searcher(source, progress, sched, interrupt, max_retries, trial_timeout, timed_out,
                                      latest)
            tuner = tune.Tuner(
                tune.with_resources(source.trainable(), resources),
                tune_config=tune.TuneConfig(
                    search_alg=searcher, scheduler=sched, metric="score", mode="max", num_samples=-1,
                    max_concurrent_trials=concurrent, reuse_actors=source.reuse_actors,
                    trial_dirname_creator=trial_dirname),
                run_config=tune.RunConfig(
                    storage_path=storage_path, name=name, verbose=0, stop=_make_stopper(interrupt),
                    callbacks=[*callbacks, _make_watchdog(trial_timeout, timed_out),
                               _make_checkpoint_log(latest, searcher)],
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the latest epoch's only
                    failure_config=tune.FailureConfig(max_failures=0)),
            )
            start = time.time()
            try:
                tuner.fit()
            except Exception as err:  # Tune wraps what the searcher raised (e.g. a full disk's StorageError)
                cause = _input_error_in(err)
                if cause is None:
                    raise
                raise cause from None
            if not interrupt.stopping:
                progress.finish(source.run, time.time() - start)
    finally:
        source.run.close()
    if interrupt.fatal is not None:
        raise interrupt.fatal
    if interrupt.signum is not None:
        raise SearchInterrupted(interrupt.signum)


def _input_error_in(err: BaseException) -> InputError | None:
    """The project's own bad-input or storage error inside an exception chain, if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, InputError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def check_resources(cpus_per_trial: float, gpus_per_trial: float, workers: int = 1) -> None:
    """InputError unless some live node of the connected cluster has the CPUs and GPUs one trial asks
    for, or, for a trial on ``workers`` > 1 Ray Train workers, unless the nodes can place that many
    workers of those resources (Tune or Train would otherwise wait for them forever)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    where = (f"({len(nodes)} node(s), {total.get('CPU', 0.0):g} CPU and {total.get('GPU', 0.0):g} GPU in all)")
    if workers > 1:
        slots = worker_slots(nodes, cpus_per_trial, gpus_per_trial)
        if slots >= workers:
            return
        raise InputError(
            f"the Ray cluster cannot place a search's {workers} workers (--num-workers): each asks for "
            f"{cpus_per_trial:g} CPU and {gpus_per_trial:g} GPU (--cpus-per-trial, --gpus-per-trial), and the "
            f"nodes {where} fit {slots}. Use fewer workers or less per worker, or add nodes")
    if any(r.get("CPU", 0.0) >= cpus_per_trial and r.get("GPU", 0.0) >= gpus_per_trial for r in nodes):
        return
    largest = max(nodes, key=lambda r: (r.get("GPU", 0.0), r.get("CPU", 0.0)), default={})
    raise InputError(
        f"no node of the Ray cluster can run a trial: each asks for {cpus_per_trial:g} CPU and {gpus_per_trial:g} GPU "
        f"(--cpus-per-trial, --gpus-per-trial), but the largest node has {largest.get('CPU', 0.0):g} CPU and "
        f"{largest.get('GPU', 0.0):g} GPU {where}. Ask for less per trial, or add a node that has it")


def worker_slots(nodes: Sequence[dict[str, float]], cpus: float, gpus: float) -> int:
    """How many workers of ``cpus`` CPUs and ``gpus`` GPUs the nodes (their ``Resources``) can hold."""
    slots = 0
    for resources in nodes:
        fits = [int(resources.get(key, 0.0) / need + 1e-9) for key, need in (("CPU", cpus), ("GPU", gpus))
                if need > 0]
        slots += min(fits) if fits else 0
    return slots


def trial_capacity(cpus_per_trial: float, gpus_per_trial: float, workers: int = 1) -> int:
    """How many trials of these resources (each on ``workers`` workers of them) the connected Ray
    cluster can run at once (at least 1)."""
    import ray

    if workers > 1:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        return max(1, worker_slots(nodes, cpus_per_trial, gpus_per_trial) // workers)
    resources = ray.cluster_resources()
    fits = [int(resources.get(key, 0.0) // need) for key, need in (("CPU", cpus_per_trial), ("GPU", gpus_per_trial))
            if need > 0]
    return max(1, min(fits)) if fits else 1


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """InputError within ``timeout`` seconds when ``host:port`` (or ``ray://host:port``) accepts no TCP
    connection; Ray itself would retry for minutes. ``auto`` is left to Ray (it fails fast)."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(f"--address {address!r} is not 'auto' or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise InputError(f"cannot reach the Ray cluster at --address {address}: {err.strerror or err} (waited up to "
                         f"{timeout:g} s). Is the head node up (`ray status` there) and the port open to this "
                         "machine?") from None


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
            check_reachable(address)
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            except ConnectionError as err:
                raise InputError(f"cannot connect to the Ray cluster at --address {address}: {str(err)[:300]}") \
                    from None
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
