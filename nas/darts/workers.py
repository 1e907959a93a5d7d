"""One DARTS search on N Ray Train workers (``num_workers`` > 1): data parallel, one Tune trial.

The search's Ray Tune trial (:func:`nas.darts.method.darts_trial`) launches a ``TorchTrainer``
(:func:`search_on_workers`) with ``ScalingConfig(num_workers=N, use_gpu=gpus > 0)`` and each worker
holding ``--cpus-per-trial`` CPUs and ``--gpus-per-trial`` GPUs; Ray Train initialises the process
group (gloo on CPU, NCCL on GPU). Every worker runs :func:`worker_loop`: the same search on the whole
dataset (fetched once from the object store) as one replica of :mod:`nas.darts.distributed`, with
its own memory check at its share of the batch. Every worker reports each epoch (Ray Train's
reports are collective); rank 0's reports reach the Tune trial through ``TuneReportCallback``, and
rank 0 alone writes the alpha log. The trial itself reserves only a byte of memory
(:data:`nas.ray_backend.LAUNCHER_RESOURCES`); the dispatcher checks that the cluster can place N
workers of the per-trial resources and runs as many searches at once as fit.

Failures: an error raised on any worker ends the Train run (no Train-level retries) and the search
is reported failed with that worker's reason (:func:`failure_of`); a worker whose process or node
died (or was preempted) raises :class:`WorkersDied` out of the trial instead, so the dispatcher runs the
search again (``--max-retries``), from its start, like any trial whose worker died. The survivors of a
death see only their collective fail (gloo: "Connection reset by peer"), often before Ray reports the
death itself: failures that are all such lost peers count as a death too (tested by SIGKILLing a worker).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nas.darts.adapters import adapter_for
from nas.darts.distributed import ReplicaGroup
from nas.darts.search import DartsConfig
from nas.darts.trial import SearchReports, search_and_report
from nas.trainer import TrialFailed, is_oom
from search_spaces.spaces.base import SearchSpace


class WorkersDied(RuntimeError):
    """A worker process or node of a data-parallel search died: not the architecture's fault."""


class _WorkerData:
    """The training set as :func:`~nas.darts.trial.search_and_report` reads it."""

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        self.train_x, self.train_y = train_x, train_y
        self.input_shape = tuple(train_x.shape[1:])


def worker_loop(settings: dict[str, Any]) -> None:
    """One replica of the search, on a Ray Train worker (``settings``: see :func:`search_on_workers`)."""
    import ray
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    device = ray.train.torch.get_device() if settings["gpus"] > 0 else torch.device("cpu")
    replicas = ReplicaGroup(context.get_world_rank(), context.get_world_size(), device)
    space: SearchSpace = settings["space"]
    darts = DartsConfig.from_dict(settings["options"])
    train_x, train_y = ray.get(settings["data"])
    log_dir = Path(settings["dir"]) if replicas.rank == 0 else None
    base = {"seed": darts.seed, "device": str(device)}
    reports = SearchReports(space, adapter_for(space), base, ray.train.report, log_dir)
    search_and_report(space, darts, _WorkerData(train_x, train_y), device, reports, replicas)


def search_on_workers(space: SearchSpace, darts: DartsConfig, data: Any, log_dir: Path, cpus: float,
                      gpus: float) -> None:
    """Run the search on ``darts.num_workers`` Ray Train workers from inside a Ray Tune trial; the
    workers' reports become the trial's. Raises :class:`~nas.trainer.TrialFailed` (with the reason)
    when a worker raised, :class:`WorkersDied` when one died."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    resources = {"CPU": cpus, "GPU": gpus} if gpus > 0 else {"CPU": cpus}
    settings = {"space": space, "options": darts.to_dict(),
                "data": ray.put((data.train_x, data.train_y)), "dir": str(log_dir), "gpus": gpus}
    trainer = TorchTrainer(
        worker_loop, train_loop_config=settings,
        scaling_config=ScalingConfig(num_workers=darts.num_workers, use_gpu=gpus > 0, resources_per_worker=resources),
        run_config=RunConfig(name="train", storage_path=str(log_dir), callbacks=[TuneReportCallback()],
                             failure_config=FailureConfig(max_failures=0)))
    try:
        trainer.fit()
    except TrainingFailedError as err:
        raise failure_of(err) from None


PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "remote process exited", "Broken pipe",
             "NCCL communicator was aborted")
"""Words of a collective's error on a surviving worker when another worker's process went away."""


def failure_of(err: Exception) -> Exception:
    """The exception a failed Train run becomes: :class:`WorkersDied` when a worker's process or node
    died (or was preempted), including when the survivors only saw their collectives lose that peer;
    else :class:`~nas.trainer.TrialFailed` with the lowest failed rank's reason."""
    from ray.exceptions import RayActorError
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError, WorkerHealthCheckTimeoutError
    from ray.train.v2.api.exceptions import PreemptionError

    if isinstance(err, PreemptionError):
        return WorkersDied(f"a node of the data-parallel search was preempted: {err}")
    failures: dict[int, Exception] = dict(getattr(err, "worker_failures", None) or {})
    if not failures:
        cause = getattr(err, "controller_failure", err)
        return TrialFailed(f"Ray Train failed: {type(cause).__name__}: {cause}")
    deaths = {r: e for r, e in failures.items()
              if isinstance(e, (RayActorError, WorkerHealthCheckFailedError, WorkerHealthCheckTimeoutError))}
    if deaths:
        rank, error = min(deaths.items())
        return WorkersDied(f"worker {rank} of the data-parallel search died: {str(error).splitlines()[0]}")
    if all(_lost_a_peer(e) for e in failures.values()):
        rank, error = min(failures.items())
        return WorkersDied(f"worker {rank} of the data-parallel search lost a peer: {str(error).splitlines()[0]}")
    rank, error = min(failures.items())
    if isinstance(error, TrialFailed):
        return TrialFailed(f"worker {rank}: {error.reason}")
    if is_oom(error):
        return TrialFailed(f"worker {rank}: out of memory: {error}")
    return TrialFailed(f"worker {rank}: {type(error).__name__}: {error}")


def _lost_a_peer(error: Exception) -> bool:
    """Whether ``error`` is a collective failing because another worker is gone (gloo's or NCCL's words)."""
    return isinstance(error, RuntimeError) and any(words in str(error) for words in PEER_LOST)
