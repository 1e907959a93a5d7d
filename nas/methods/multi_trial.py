"""Multi-trial search: an ask/tell strategy's proposals, each evaluated in its own Ray trial.

:class:`MultiTrial` is the :class:`~nas.ray_backend.TrialSource` of every
:class:`~nas.strategies.base.Strategy`, built-in or a user's: each ``next_config`` is the next
trial of the :class:`~nas.run.SearchRun` (journaled, deduplicated by canonical graph hash,
checked against hard limits), evaluated in the worker by :func:`nas.trial.run_trial` with the
run's evaluator, and each completion is journaled and told to the strategy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

from nas.objective import Objective
from nas.ray_backend import TrialSource
from nas.run import SearchRun
from nas.rundir import TRIAL_WEIGHTS
from nas.trial import run_trial
from search_spaces.analysis import Cost, measure
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.spaces.base import SearchSpace

Payload = tuple[ArchGraph, Cost | None]
_METRIC_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "epoch_seconds",
                "latency_ms", "latency_protocol", "node", "device", "precision", "params", "flops", "weights",
                "weights_error")
_REPORT_KEYS = {"score", "failed", "setup_error", "stopped_early", "checkpoint", "reason", "trial", "done",
                "time_this_iter_s", "time_total_s", "timestamp", "training_iteration", "date", "hostname", "pid",
                "trial_id", "experiment_id", "time_since_restore", "iterations_since_restore",
                "timesteps_since_restore", "checkpoint_dir_name", "node_ip", "config", "should_checkpoint",
                "experiment_tag", "timesteps_total", "episodes_total"}


def trial_payload(space: SearchSpace, objective: Objective) -> tuple[
        Callable[[Hashable], tuple[str, Payload]], Callable[[Payload], str | None]]:
    """``identify`` and ``feasibility`` for :class:`SearchRun` when trials evaluate graphs.

    The payload is (graph, cost). Params/FLOPs are measured in the driver only when a hard limit
    needs them before dispatch; otherwise the trial measures them on its worker, off the
    driver's critical path (measuring costs tens of ms per graph).
    """
    limited = objective.max_params is not None or objective.max_mflops is not None

    def identify(arch: Hashable) -> tuple[str, Payload]:
        graph = space.to_graph(arch)
        return graph.canonical_hash(), (graph, measure(graph) if limited else None)

    def feasibility(payload: Payload) -> str | None:
        cost = payload[1]
        return None if cost is None else objective.check_limits(cost.params, cost.flops)

    return identify, feasibility


def trial_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """What the journal keeps of a trial's last report: the trainer's and the user's metrics, how far
    it got (``epochs_run``), where it ran and its weights file (in its last checkpoint, in the run's
    storage: a path or a cloud URI)."""
    out = {k: result[k] for k in _METRIC_KEYS if k in result}
    if result.get("checkpoint") and not result.get("weights_error"):
        out["weights"] = f"{str(result['checkpoint']).rstrip('/')}/{TRIAL_WEIGHTS}"
    for key, value in result.items():  # a user evaluator's own metrics
        if key not in out and key not in _REPORT_KEYS and isinstance(value, (int, float, str, bool)):
            out[key] = value
    if "epoch" in result or "training_iteration" in result:
        out["epochs_run"] = result.get("epoch", result.get("training_iteration"))
    return out


class MultiTrial(TrialSource):
    """A strategy's trials evaluated by ``evaluator`` (see the module docstring)."""

    def __init__(self, run: SearchRun, evaluator: Any, objective: Objective, *, seed: int = 0,
                 gpus: float = 0.0, log: Callable[[str], Any] = print) -> None:
        self.run = run
        self.log = log
        self.evaluator = evaluator
        self.objective = objective
        self.seed = seed
        self.gpus = gpus

    def trainable(self) -> Callable[[dict[str, Any]], None]:
        from ray import tune

        # the evaluator goes to the object store once, not once per trial (a built-in trainer's data as numpy
        # arrays that trials read without copying: Evaluator.for_trials)
        return tune.with_parameters(run_trial, evaluator=self.evaluator.for_trials(), objective=self.objective,
                                    gpus=self.gpus)

    def next_config(self) -> dict[str, Any] | None:
        nxt = self.run.next_trial()
        if nxt is None:
            return None
        record, (graph, cost) = nxt
        measured = {} if cost is None else {"params": cost.params, "flops": cost.flops}
        # the graph as one JSON string: Tune flattens nested config values into result and logger columns
        resume = {"resume_from": self.run.checkpoints[record.trial]} if record.trial in self.run.checkpoints else {}
        return {"trial": record.trial, "arch": record.arch, "graph": graph.to_json(), "seed": self.seed,
                "dirname": f"trial_{record.trial}", **measured, **resume}

    def on_checkpoint(self, config: dict[str, Any], uri: str, epoch: int | None = None) -> None:
        self.run.checkpoint(config["trial"], uri, epoch)

    def on_retry(self, config: dict[str, Any], reason: str, attempt: int) -> None:
        self.run.retry(config["trial"], reason, attempt)
        self.log(f"trial {config['trial']}: {reason}; running it again (attempt {attempt + 1})")

    def on_complete(self, config: dict[str, Any], result: dict[str, Any] | None, error: str | None,
                    infrastructure: bool = False) -> None:
        trial = config["trial"]
        if error is not None or result is None:
            # not the architecture's fault when the infrastructure failed: not cached against its hash
            self.run.finish(trial, None, reason=error or "no result", cacheable=not infrastructure)
        elif result.get("setup_error"):  # not the architecture's failure: nothing is recorded, the search stops
            raise InputError(f"trial {trial}: {result.get('reason')}; the search stopped (rerun to resume once the "
                             "evaluator or the objectives are fixed)")
        elif result.get("failed"):
            self.run.finish(trial, None, reason=str(result.get("reason", "failed")), metrics=trial_metrics(result))
        else:
            if result.get("weights_error"):
                self.log(f"trial {trial}: {result['weights_error']} (its score counts; `nas export` refuses it "
                         "without --allow-untrained)")
            score = float(result["score"])
            # stopped early by the scheduler: a low-fidelity score, told with the epochs it reached
            budget = float(result.get("epoch", result.get("training_iteration", 0))) \
                if result.get("stopped_early") else None
            values = None
            if self.objective.multi:  # the worker checked every objective is there and finite
                values = self.objective.values(result, result["params"], result["flops"], result.get("latency_ms"))
            self.run.finish(trial, score if math.isfinite(score) else None, metrics=trial_metrics(result),
                            budget=budget, values=values)
