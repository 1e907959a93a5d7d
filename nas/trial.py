"""One multi-trial search trial inside its Ray worker: the :class:`Trial` an evaluator sees, and
:func:`run_trial`, the Tune function that builds it, calls the evaluator and reports.

The trial's Tune config is plain data from the driver: ``trial`` (id), ``arch`` (the space's
JSON form), ``graph`` (the ArchGraph as a JSON string: no space is needed in the worker), optionally
``params``/``flops`` measured by the driver, and ``resume_from`` (the trial's last checkpoint, when
it runs again after its driver or worker died). Every report carries ``score`` (the objective of
the metrics so far), the metrics, ``node``, ``device``, ``params`` and ``flops``, and a Ray Tune
checkpoint (``weights.safetensors``, plus ``train_state.safetensors`` for the built-in trainer)
that Tune persists to the run's storage (``--storage``: a shared filesystem or a cloud URI), so
the weights reach the run store from any node; ``weights_error`` says when a save failed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from nas.export.weights import save_weights
from nas.objective import COST_METRICS, LATENCY_PROTOCOL, Objective, ObjectiveMissing
from nas.retrain import load_checkpoint, save_checkpoint
from nas.rundir import TRIAL_STATE, TRIAL_WEIGHTS
from nas.trainer import TrainState, TrialFailed, device_for
from search_spaces.analysis import measure
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph

FAILED_SCORE = float("nan")

Send = Callable[[dict[str, Any], Path | None], None]
"""``send(metrics, checkpoint_dir)``: one report, with the directory to persist as its checkpoint (or None)."""


class TrialCheckpoints:
    """Stages the trial's checkpoint for its next report: after every epoch, *before* that epoch's
    report (a scheduler may stop the trial at any report, and nothing after it runs), the weights
    (the module's state dict, CPU copies; metadata: the graph's canonical ``arch_hash`` and the
    ``epoch``) and, for the built-in trainer, the full :class:`TrainState` go into a fresh local
    directory that the report hands to Tune, which copies it to the run's storage; the local copy
    is removed after the report. A failed save (e.g. a full disk) does not fail the trial:
    :meth:`fields` then gives ``weights_error``.
    """

    def __init__(self, arch_hash: str) -> None:
        self.arch_hash = arch_hash
        self.staged: Path | None = None
        self.error: str | None = None

    def save(self, state: TrainState) -> None:
        """Stage ``state`` (the model's weights and everything needed to continue after ``state.epoch``)."""
        self.save_state_dict(state.model, state.epoch, state)

    def save_state_dict(self, state_dict: Mapping[str, torch.Tensor], epoch: int,
                        train_state: TrainState | None = None) -> None:
        self.discard()
        staged = Path(tempfile.mkdtemp(prefix="nas-checkpoint-"))
        try:
            save_weights(dict(state_dict), staged / TRIAL_WEIGHTS, arch_hash=self.arch_hash,
                         extra={"epoch": str(epoch)})
            if train_state is not None:
                save_checkpoint(staged / TRIAL_STATE, train_state, {"arch_hash": self.arch_hash})
        except Exception as err:  # e.g. a full disk: the trial's result still counts
            shutil.rmtree(staged, ignore_errors=True)
            self.error = f"could not save the weights after epoch {epoch}: {type(err).__name__}: {err}"
            return
        self.staged, self.error = staged, None

    def take(self) -> Path | None:
        """The staged directory for this report (the caller hands it to Tune, then :meth:`discard`)."""
        staged, self.staged = self.staged, None
        return staged

    def discard(self, staged: Path | None = None) -> None:
        for path in (staged, self.staged if staged is None else None):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        if staged is None:
            self.staged = None

    def fields(self) -> dict[str, Any]:
        return {"weights_error": self.error} if self.error is not None else {}


def resume_state(checkpoint: str | None, arch_hash: str) -> TrainState | None:
    """The built-in trainer's state in the checkpoint ``checkpoint`` (a path or URI in the run's
    storage) when it belongs to ``arch_hash``; None when there is none or it cannot be read (the
    trial then starts over: a checkpoint only saves time)."""
    if not checkpoint:
        return None
    from ray.tune import Checkpoint

    try:
        with Checkpoint(checkpoint).as_directory() as local:
            loaded = load_checkpoint(Path(local) / TRIAL_STATE)
    except Exception:  # unreadable or gone: start over
        return None
    if loaded is None or loaded.identity.get("arch_hash") != arch_hash:
        return None
    return loaded.state


class Trial:
    """What an evaluator sees of its trial.

    ``id`` (trial id in the run), ``arch`` (the architecture, the space's JSON form), ``graph``
    (its ArchGraph), ``device`` (the trial's torch device, from its resources), ``checkpoint_dir``
    (a local scratch directory of the trial on its node: files there are not persisted), ``seed``
    (for weights and data order), ``metric`` (the objective's metric name: the first objective;
    a returned float stands for it; with several objectives return or report all of them), ``resume`` (the
    built-in trainer's state to continue from when the trial runs again, else None).
    ``report(epoch=..., **metrics)`` reports progress (feeds ASHA and the progress line; the
    model's weights are checkpointed with it, into the run's storage).
    """

    def __init__(self, trial_id: int, arch: dict[str, Any], graph: ArchGraph, device: torch.device,
                 checkpoint_dir: Path, objective: Objective, seed: int, params: int, flops: int,
                 send: Send, context: dict[str, Any], resume: TrainState | None = None) -> None:
        self.id = trial_id
        self.arch = arch
        self.graph = graph
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.seed = seed
        self.objective = objective
        self.metric = objective.primary
        self.model: torch.nn.Module | None = None  # the user's model (FunctionEvaluator): saved at reports
        self.latency_ms: float | None = None
        self.weights = TrialCheckpoints(graph.canonical_hash())
        self.resume = resume
        self.params, self.flops = params, flops
        self._send = send
        self._context = context
        self.reports = 0
        self.last_metrics: dict[str, float] | None = None

    @property
    def needs_latency(self) -> bool:
        return self.objective.needs_latency

    def metrics_of(self, out: Any) -> dict[str, Any]:
        """An evaluator's return as metrics: a mapping as it is; one number stands for the (only)
        objective's metric; with several objectives a number is ObjectiveMissing (a setup error)."""
        if isinstance(out, Mapping):
            return dict(out)
        if isinstance(out, (int, float)) and not isinstance(out, bool):
            if self.objective.multi:
                raise ObjectiveMissing(f"the evaluator returned one number ({out!r}) but the search has objectives "
                                       f"{[str(c) for c in self.objective.criteria]}: return a mapping naming each "
                                       "reported metric")
            return {self.metric: float(out)}
        raise InputError(f"the evaluator returned {type(out).__name__}; return a float or a mapping of metric names "
                         "to floats")

    def report(self, epoch: int | None = None, **metrics: float) -> None:
        """Report the metrics after ``epoch`` (1-based; default: the number of reports so far + 1)."""
        epoch = self.reports + 1 if epoch is None else int(epoch)
        if self.model is not None:
            self.weights.save_state_dict(self.model.state_dict(), epoch)
        self._report({**metrics, "epoch": epoch})

    def report_epoch(self, metrics: Mapping[str, Any]) -> None:
        """The built-in trainer's per-epoch report (its weights were saved by ``save_state``)."""
        self._report(dict(metrics))

    def save_state(self, state: TrainState) -> None:
        self.weights.save(state)

    def _report(self, metrics: dict[str, Any]) -> None:
        latency = metrics.get("latency_ms", self.latency_ms)
        score, reason = self.objective.evaluate(metrics, params=self.params, flops=self.flops, latency_ms=latency)
        if score is None:
            raise TrialFailed(reason or "objective undefined")
        extra = {} if latency is None else {"latency_ms": latency, "latency_protocol": LATENCY_PROTOCOL}
        staged = self.weights.take()
        try:
            self._send({**metrics, **extra, **self._context, "score": score, "failed": False,
                        "device": str(self.device), "params": self.params, "flops": self.flops,
                        **self.weights.fields()}, staged)
        finally:
            self.weights.discard(staged)  # Tune copied it to the run's storage
        self.reports += 1
        self.last_metrics = {k: v for k, v in metrics.items() if k != "epoch"}


def run_trial(config: dict[str, Any], evaluator: Any = None, objective: Objective | None = None,
              gpus: float = 0.0) -> None:
    """One trial inside a Ray worker (the Tune function of a multi-trial search).

    Builds the graph from ``config["graph"]`` (JSON), measures params/FLOPs (unless the driver did), calls
    ``evaluator.evaluate(graph, trial)`` and reports its final metrics (unless its last report
    already gave the same value of the objective's metric). A failure (TrialFailed, any exception,
    a non-finite score, an infeasible latency) is reported as ``failed`` with a reason instead of
    raising, so the search records why and goes on.
    """
    import ray
    from ray import tune

    objective = objective or Objective()
    context = {"trial": config["trial"], "node": ray.get_runtime_context().get_node_id()}
    device = device_for(gpus)

    def send(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        tune.report(metrics, checkpoint=None if checkpoint_dir is None else tune.Checkpoint.from_directory(
            str(checkpoint_dir)))

    try:
        graph = ArchGraph.from_json(config["graph"])
        params, flops = config.get("params"), config.get("flops")
        if params is None or flops is None:
            cost = measure(graph)
            params, flops = cost.params, cost.flops
        scratch = Path(tune.get_context().get_trial_dir())
        trial = Trial(config["trial"], config["arch"], graph, device, scratch, objective,
                      int(config.get("seed", 0)), params, flops, send, context,
                      resume=resume_state(config.get("resume_from"), graph.canonical_hash()))
        final = trial.metrics_of(evaluator.evaluate(graph, trial))
        reported = [c.name for c in objective.criteria if c.name not in COST_METRICS]
        said = trial.last_metrics is not None and all(trial.last_metrics.get(n) == final.get(n) for n in reported)
        if not said:  # the last report is the trial's result: make it the returned metrics
            final.setdefault("epoch", trial.reports + 1)
            if trial.model is not None:
                trial.weights.save_state_dict(trial.model.state_dict(), int(final["epoch"]))
            trial.report_epoch({k: v for k, v in final.items() if isinstance(v, (int, float))})
    except TrialFailed as err:
        tune.report({**context, "score": FAILED_SCORE, "failed": True, "reason": err.reason})
    except ObjectiveMissing as err:  # the evaluator and the objectives disagree: the driver stops the search
        tune.report({**context, "score": FAILED_SCORE, "failed": True, "reason": str(err), "setup_error": True})
    except Exception as err:  # a trial must never take the search down
        tune.report({**context, "score": FAILED_SCORE, "failed": True, "reason": f"{type(err).__name__}: {err}"})
    finally:
        if device.type == "cuda":  # actors are reused across trials: hand cached blocks back
            torch.cuda.empty_cache()
