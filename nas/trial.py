"""One multi-trial search trial inside its Ray worker: the :class:`Trial` an evaluator sees, and
:func:`run_trial`, the Tune function that builds it, calls the evaluator and reports.

The trial's Tune config is plain data from the driver: ``trial`` (id), ``arch`` (the space's
JSON form), ``graph`` (the ArchGraph as a JSON string: no space is needed in the worker), optionally
``params``/``flops`` measured by the driver, and ``trial_dir`` (the trial's directory in the
run's storage). Every report carries ``score`` (the objective of the metrics so far), the
metrics, ``node``, ``device``, ``params``, ``flops`` and ``weights`` (the file the latest
weights were saved to) or ``weights_error``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from nas.export.weights import save_weights
from nas.objective import Objective
from nas.rundir import TRIAL_WEIGHTS
from nas.trainer import TrainState, TrialFailed, device_for
from search_spaces.analysis import measure
from search_spaces.ir import ArchGraph

FAILED_SCORE = float("nan")


class TrialWeights:
    """Keeps a trial's latest trained weights in ``trial_dir/weights.safetensors``.

    :meth:`save` runs after every epoch, *before* that epoch's report (a scheduler may stop the
    trial at any report, and nothing after it runs), and atomically replaces the file with the
    module's state dict (CPU copies; metadata: the graph's canonical ``arch_hash`` and the
    ``epoch``). :meth:`fields` gives the report entries: ``weights`` (the file's path) once a save
    succeeded, or ``weights_error`` when the latest save failed, which does not fail the trial.
    """

    def __init__(self, trial_dir: str | Path, arch_hash: str) -> None:
        self.path = Path(trial_dir) / TRIAL_WEIGHTS
        self.arch_hash = arch_hash
        self.epoch: int | None = None
        self.error: str | None = None

    def save(self, state: TrainState) -> None:
        """Save ``state.model`` (a state dict) as the weights after epoch ``state.epoch``."""
        self.save_state_dict(state.model, state.epoch)

    def save_state_dict(self, state_dict: Mapping[str, torch.Tensor], epoch: int) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            save_weights(dict(state_dict), self.path, arch_hash=self.arch_hash, extra={"epoch": str(epoch)})
        except Exception as err:  # e.g. a full disk: the trial's result still counts
            self.error = f"could not save the weights after epoch {epoch}: {type(err).__name__}: {err}"
            return
        self.epoch, self.error = epoch, None

    def fields(self) -> dict[str, Any]:
        if self.error is not None:
            return {"weights_error": self.error}
        return {} if self.epoch is None else {"weights": str(self.path)}


class Trial:
    """What an evaluator sees of its trial.

    ``id`` (trial id in the run), ``arch`` (the architecture, the space's JSON form), ``graph``
    (its ArchGraph), ``device`` (the trial's torch device, from its resources), ``checkpoint_dir``
    (a directory of the trial's own in the run's storage), ``seed`` (for weights and data order),
    ``metric`` (the objective's metric name). ``report(epoch=..., **metrics)`` reports progress
    (feeds ASHA and the progress line; the model's weights are saved first).
    """

    def __init__(self, trial_id: int, arch: dict[str, Any], graph: ArchGraph, device: torch.device,
                 checkpoint_dir: Path, objective: Objective, seed: int, params: int, flops: int,
                 send: Callable[[dict[str, Any]], None], context: dict[str, Any]) -> None:
        self.id = trial_id
        self.arch = arch
        self.graph = graph
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.seed = seed
        self.objective = objective
        self.metric = objective.metric
        self.model: torch.nn.Module | None = None  # the user's model (FunctionEvaluator): saved at reports
        self.latency_ms: float | None = None
        self.weights = TrialWeights(checkpoint_dir, graph.canonical_hash())
        self.params, self.flops = params, flops
        self._send = send
        self._context = context
        self.reports = 0
        self.last_metrics: dict[str, float] | None = None

    @property
    def needs_latency(self) -> bool:
        return self.objective.needs_latency

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
        extra = {} if latency is None else {"latency_ms": latency}
        self._send({**metrics, **extra, **self._context, "score": score, "failed": False, "device": str(self.device),
                    "params": self.params, "flops": self.flops, **self.weights.fields()})
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
    try:
        graph = ArchGraph.from_json(config["graph"])
        params, flops = config.get("params"), config.get("flops")
        if params is None or flops is None:
            cost = measure(graph)
            params, flops = cost.params, cost.flops
        trial_dir = Path(config["trial_dir"]) if config.get("trial_dir") else Path(tune.get_context().get_trial_dir())
        trial = Trial(config["trial"], config["arch"], graph, device, trial_dir, objective,
                      int(config.get("seed", 0)), params, flops, tune.report, context)
        out = evaluator.evaluate(graph, trial)
        final = {trial.metric: float(out)} if isinstance(out, (int, float)) else dict(out)
        said = trial.last_metrics is not None and trial.last_metrics.get(trial.metric) == final.get(trial.metric)
        if not said:  # the last report is the trial's result: make it the returned metrics
            final.setdefault("epoch", trial.reports + 1)
            if trial.model is not None:
                trial.weights.save_state_dict(trial.model.state_dict(), int(final["epoch"]))
            trial.report_epoch({k: v for k, v in final.items() if isinstance(v, (int, float))})
    except TrialFailed as err:
        tune.report({**context, "score": FAILED_SCORE, "failed": True, "reason": err.reason})
    except Exception as err:  # a trial must never take the search down
        tune.report({**context, "score": FAILED_SCORE, "failed": True, "reason": f"{type(err).__name__}: {err}"})
    finally:
        if device.type == "cuda":  # actors are reused across trials: hand cached blocks back
            torch.cuda.empty_cache()
