"""DARTS as a one-shot method (``strategy="darts"``): one Ray Tune trial per seed, each a whole search.

Each search runs on the trial's resources (a GPU when one is given), or with ``num_workers`` N > 1
on N Ray Train workers of those resources each (:mod:`nas.darts.workers`, data parallel; still one
Tune trial). Per epoch the trial reports the supernet's losses and accuracies, the architecture
derived from the current alphas and its number of skip connections, and appends the alpha trajectory
to ``RUN/darts/seed_<s>/alphas.jsonl`` (:mod:`nas.darts.trial`). The finished search's derived
architecture becomes the run's trial (score: the supernet's accuracy on the alpha split at the
returned epoch); on the NAS-Bench-201 space with a table, its benchmark index and accuracies are
added to the trial's metrics (:class:`nas.methods.base.OneShotMethod` does the journaling).

Before anything is launched, the supernet's memory at a worker's share of the batch is estimated and
the run is refused, with a batch size that fits, when it cannot fit the local device.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from nas.benchmarks.nb201 import NB201Table
from nas.darts.adapters import adapter_for
from nas.darts.memory import available_memory, check_memory
from nas.darts.search import DartsConfig
from nas.darts.trial import SearchReports, search_and_report
from nas.darts.workers import WorkersDied, search_on_workers
from nas.methods.base import OneShotMethod
from nas.trainer import TrialFailed, device_for
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace

RESULT_KEYS = ("device", "search_seconds", "epochs_run", "returned_epoch", "stopped_early", "stop_reason",
               "train_acc", "val_acc", "skip_connects")
# the user's training settings DARTS takes over its own defaults (the rest of a TrainConfig does not apply)
TRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "momentum", "grad_clip", "seed")


def darts_trial(config: dict[str, Any], space: SearchSpace | None = None, options: dict[str, Any] | None = None,
                data: Any = None, gpus: float = 0.0, cpus: float = 1.0) -> None:
    """One DARTS search inside a Ray Tune trial; reports every epoch, then the derived architecture.

    Reports the supernet's ``train_acc`` / ``val_acc`` / losses, ``skip_connects`` and ``score``
    per epoch and, at the end, ``derived`` with ``arch_json`` (the space's JSON form, as a string:
    Tune flattens nested results). A failure is reported as ``failed`` with a reason instead of
    raising, so the run records why and goes on; only the death of a data-parallel worker raises
    (:class:`~nas.darts.workers.WorkersDied`: the dispatcher runs the search again).
    """
    from ray import tune

    assert space is not None and options is not None
    darts = DartsConfig.from_dict({**options, "seed": config["seed"]})
    base: dict[str, Any] = {"seed": darts.seed}
    try:
        log_dir = Path(config["dir"])
        if darts.num_workers > 1:
            search_on_workers(space, darts, data, log_dir, cpus, gpus)
            return
        device = device_for(gpus)
        base["device"] = str(device)
        search_and_report(space, darts, data, device, SearchReports(space, adapter_for(space), base, tune.report,
                                                                     log_dir))
    except WorkersDied:
        raise
    except TrialFailed as err:
        tune.report({**base, "failed": True, "reason": err.reason, "score": float("nan")})
    except Exception as err:  # a failed search never takes the run down
        tune.report({**base, "failed": True, "reason": f"{type(err).__name__}: {err}", "score": float("nan")})


class Darts(OneShotMethod):
    """DARTS (Liu et al. 2019): options are :class:`~nas.darts.search.DartsConfig` fields (the paper's
    defaults, and ``num_workers``); searches the spaces :func:`~nas.darts.adapters.adapter_for` accepts."""

    name = "darts"
    default_space = "darts"
    default_trials = 4

    @classmethod
    def resolve_options(cls, options: dict[str, Any], train: dict[str, Any], seed: int) -> dict[str, Any]:
        known = {f.name for f in fields(DartsConfig)}
        not_darts = sorted(set(train) - set(TRAIN_KEYS))
        if not_darts:
            raise InputError(f"train setting(s) {not_darts} do not apply to darts (it takes "
                             f"{list(TRAIN_KEYS)}); set DARTS options instead: {sorted(known)}")
        given = {k: v for k, v in {**train, **options}.items() if k != "seed"}
        resolved = DartsConfig.from_dict({**given, "seed": seed}).to_dict()
        resolved.pop("seed")  # each search's seed is its trial's (seed, seed + 1, ...)
        return resolved

    @property
    def workers_per_trial(self) -> int:  # type: ignore[override]
        """Ray Train workers of one search (``num_workers``; 1: the search runs in its trial)."""
        return int(self.options.get("num_workers", 1))

    def check(self) -> None:
        adapter_for(self.space)
        darts = DartsConfig.from_dict({**self.options, "seed": 0})
        gpus = self.gpus
        if darts.num_workers > 1 and gpus != int(gpus):
            raise InputError(f"--gpus-per-trial {gpus:g} with --num-workers {darts.num_workers}: each worker of a "
                             "data-parallel search needs whole GPUs of its own (NCCL runs one rank per GPU); use "
                             "--gpus-per-trial 1, or 0 for CPU workers")
        if not self.remote and (gpus == 0 or torch.cuda.is_available()):  # else: checked in the trial
            device = torch.device("cuda" if gpus > 0 else "cpu")
            check_memory(self.space, darts, self.data.input_shape, available_memory(device),
                         where=f"this machine's {device}")
        self._lookup = _table_lookup(self.space, self.table)

    def trainable(self) -> Callable[[dict[str, Any]], None]:
        from ray import tune

        return tune.with_parameters(darts_trial, space=self.space, options=self.options, data=self.data,
                                    gpus=self.gpus, cpus=self.cpus)

    def describe_epoch(self, result: dict[str, Any]) -> str | None:
        if "epoch" not in result:
            return None
        return (f"seed {result['seed']} epoch {result['epoch']}/{self.options['epochs']}: supernet train acc "
                f"{result.get('train_acc', 0):.3f}, val acc {result.get('val_acc', 0):.3f}, "
                f"skip connects {result.get('skip_connects')}"
                + (f", expected mixed-op latency {result['expected_latency_ms']:.3f} ms"
                   if "expected_latency_ms" in result else ""))

    def describe_outcome(self, metrics: dict[str, Any]) -> str:
        if "nb201_index" not in metrics:
            return f", {metrics.get('skip_connects')} skip connects"
        return (f", {metrics.get('skip_connects')} skip connects, NAS-Bench-201 index {metrics['nb201_index']} "
                f"(test acc {metrics['nb201_test_acc']:.2f})")

    def outcome(self, result: dict[str, Any]) -> tuple[Hashable, float, dict[str, Any]]:
        arch = self.space.from_json(json.loads(result["arch_json"]))
        metrics = {k: result[k] for k in (*RESULT_KEYS, "alpha_log") if k in result}
        if self._lookup is not None:
            metrics.update(self._lookup(arch))
        return arch, float(result["score"]), metrics


def _table_lookup(space: SearchSpace, table_path: str | None) -> Callable[[Hashable], dict[str, Any]] | None:
    """For NB-201 runs given a table: derived cell -> its benchmark index and accuracies."""
    if space.name != "nb201" or not table_path:
        return None
    table = NB201Table(table_path)

    def lookup(arch: Hashable) -> dict[str, Any]:
        row = table.row(arch)  # type: ignore[arg-type]
        return {"nb201_index": int(table.index[row]), "nb201_test_acc": float(table.test_acc[row]),
                "nb201_valid_acc": float(table.valid_acc[row])}

    return lookup
