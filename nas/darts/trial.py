"""What one DARTS search reports and writes, wherever it runs (a Ray Tune trial, or the workers of a
data-parallel search on Ray Train).

Per epoch: the supernet's losses and accuracies, the architecture derived from the current alphas and
its number of skip connections (a report), and the full alpha trajectory (softmax weights per edge)
appended to ``RUN/darts/seed_<s>/alphas.jsonl``; when the search ends, ``alphas.png`` beside it (the
mean weight of each op per epoch, so a skip-connect collapse can be seen) and a last report with
``derived`` and the architecture. In a data-parallel search every worker reports (Ray Train's reports
are collective; rank 0's reach Tune) and only rank 0 writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nas.darts.adapters import EdgeAdapter
from nas.darts.distributed import SINGLE, ReplicaGroup
from nas.darts.memory import available_memory, check_memory
from nas.darts.search import DartsConfig, DartsResult, darts_search
from nas.methods.base import append_line, read_lines
from search_spaces.spaces.base import SearchSpace

ALPHA_LOG = "alphas.jsonl"


def plot_alphas(log: Path, out: Path) -> Path | None:
    """``out``: per alpha name, the mean softmax weight of each op over the edges, against epochs."""
    records = read_lines(log)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(records[0]["alphas"])
    ops = records[0]["ops"]
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.8), squeeze=False)
    epochs = [r["epoch"] for r in records]
    for ax, name in zip(axes[0], names, strict=True):
        mean = np.array([np.asarray(r["alphas"][name]).mean(0) for r in records])  # (epochs, ops)
        for k, op in enumerate(ops):
            ax.plot(epochs, mean[:, k], label=op, lw=2.5 if op == "skip_connect" else 1.2)
        ax.set_title(f"{name if name == 'cell' else name + ' cell'}: mean softmax(alpha) over edges")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


class SearchReports:
    """The reports of one search, sent with ``report`` (``ray.tune.report`` or ``ray.train.report``),
    and its alpha log and plot in ``log_dir`` (None: this process writes nothing, e.g. a worker of rank
    > 0). ``base``: entries of every report (the seed, the device)."""

    def __init__(self, space: SearchSpace, adapter: EdgeAdapter, base: dict[str, Any],
                 report: Callable[[dict[str, Any]], None], log_dir: Path | None) -> None:
        self.space = space
        self.adapter = adapter
        self.base = base
        self.report = report
        self.alpha_log = None if log_dir is None else log_dir / ALPHA_LOG
        if self.alpha_log is not None:
            log_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            self.alpha_log.write_text("")  # a search that runs again starts its trajectory again

    def epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """``on_epoch`` of :func:`~nas.darts.search.darts_search`."""
        if self.alpha_log is not None:
            append_line(self.alpha_log, {
                "epoch": epoch, "ops": [str(op) for op in self.adapter.ops], "alphas": record["alphas"],
                "edges": self.adapter.edge_labels(), "skip_connects": record["skip_connects"],
                "arch": record["arch"], "hessian_eigenvalue": record.get("hessian_eigenvalue"),
                **{k: record[k] for k in ("expected_latency_ms", "latency_table_ms") if k in record}})
        summary = {k: v for k, v in record.items() if not isinstance(v, (list, dict))}
        summary["val_acc"], summary["val_loss"] = summary.pop("valid_acc"), summary.pop("valid_loss")
        self.report({**self.base, **summary, "failed": False, "score": summary["val_acc"]})

    def finished(self, result: DartsResult, seconds: float) -> None:
        """The last report: the derived architecture (as a JSON string: Tune flattens nested results)."""
        if self.alpha_log is not None:
            plot_alphas(self.alpha_log, self.alpha_log.parent / "alphas.png")
        last = result.history[result.epoch - 1]
        self.report({**self.base, "derived": True, "failed": False,
                     "arch_json": json.dumps(self.space.to_json(result.arch)), "score": float(result.valid_acc),
                     "val_acc": float(result.valid_acc), "train_acc": last["train_acc"],
                     "skip_connects": last["skip_connects"], "search_seconds": round(seconds, 2),
                     "epochs_run": len(result.history), "returned_epoch": result.epoch,
                     "stopped_early": result.stopped_early, "stop_reason": result.stop_reason,
                     "alpha_log": str(self.alpha_log)})


def search_and_report(space: SearchSpace, darts: DartsConfig, data: Any, device: torch.device,
                      reports: SearchReports, replicas: ReplicaGroup = SINGLE) -> DartsResult:
    """The memory check on ``device`` (with this worker's share of the batch), the search on ``data``
    (``train_x`` (N, C, H, W), ``train_y`` (N,), ``input_shape``), every report. Raises what the search
    raises (:class:`~nas.trainer.TrialFailed` with its reason, or an InputError)."""
    where = f"this {'worker' if replicas.distributed else 'trial'}'s {device}"
    check_memory(space, darts, data.input_shape, available_memory(device), where=where)
    start = time.time()
    result = darts_search(space, darts, data.train_x, data.train_y, device, on_epoch=reports.epoch,
                          adapter=reports.adapter, replicas=replicas)
    reports.finished(result, time.time() - start)
    return result
