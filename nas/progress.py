"""What a user sees: a live status line, the leaderboard, and the best-so-far plot."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Any

from nas.rundir import RunRecords, TrialRecord


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Status line: trials done/total, running, failed, best so far, elapsed, ETA.

    On a terminal the line is redrawn in place; otherwise a line is printed per finished trial.
    """

    def __init__(self, total: int, stream: IO[str] | None = None, quiet: bool = False) -> None:
        self.total = total
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.start = time.time()
        self.done_at_start: int | None = None
        self.last_done = -1

    def __getstate__(self) -> dict[str, Any]:
        # Tune may pickle the searcher holding this object: streams cannot be pickled
        return {**self.__dict__, "stream": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.stream = self.stream or sys.stdout

    def line(self, run: RunRecords, running: int) -> str:
        done = run.num_done
        if self.done_at_start is None:
            self.done_at_start = done
        elapsed = time.time() - self.start
        new = done - self.done_at_start
        eta = "?" if new == 0 else _clock(elapsed / new * (self.total - done))
        if run.multi:
            best = f"Pareto front {len(run.pareto_front())} trials"
        else:
            best = "best " + ("-" if run.best is None else f"{run.best.score:.4f} (trial {run.best.trial})")
        return (f"trials {done}/{self.total} done, {running} running, {run.num_failed} failed | "
                f"{best} | elapsed {_clock(elapsed)} | ETA {eta}")

    def update(self, run: RunRecords, running: int) -> None:
        if self.quiet:
            return
        done = run.num_done
        if self.tty:
            self.stream.write("\r\033[K" + self.line(run, running))
            self.stream.flush()
        elif done != self.last_done:
            self.stream.write(self.line(run, running) + "\n")
            self.stream.flush()
        self.last_done = done

    def finish(self, run: RunRecords, seconds: float) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\n")
        self.stream.write(f"search finished in {_clock(seconds)}: {run.num_done} trials, {run.num_failed} failed\n")
        self.stream.flush()


def leaderboard_rows(run: RunRecords, top: int = 10) -> list[dict[str, Any]]:
    rows = []
    for rank, r in enumerate(run.leaderboard(top), start=1):
        m = r.metrics
        rows.append({"rank": rank, "trial": r.trial, "score": f"{r.score:.4f}",
                     "val_acc": _fmt(m.get("best_val_acc", m.get("val_acc"))),
                     "params": m.get("params", "-"), "mflops": _fmt(m.get("flops", None), 1e-6, 2),
                     "epochs": _epochs(r), "hash": r.hash[:12],
                     "arch": run.describe(r)})
    return rows


def history_rows(run: RunRecords) -> list[dict[str, Any]]:
    rows = []
    for r in sorted(run.records.values(), key=lambda r: r.trial):
        status = r.status or "pending"
        if r.budget is not None:
            status += f", stopped early at epoch {r.budget:g}"
        rows.append({"trial": r.trial, "status": status,
                     "score": "-" if r.score is None else f"{r.score:.4f}", "t": _fmt(r.t_result, 1, 1),
                     "hash": r.hash[:12], "note": r.reason or run.describe(r)})
    return rows


def _epochs(r: TrialRecord) -> str:
    """Epochs a trial ran; an early-stopped one (ASHA) is marked: its score is a low-fidelity one."""
    epochs = r.metrics.get("epochs_run", r.metrics.get("epoch", "-"))
    return f"{epochs} (stopped)" if r.budget is not None else str(epochs)


def _fmt(value: Any, scale: float = 1.0, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{float(value) * scale:.{digits}f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no trials)"
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(str(r[k]).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def plot_progress(run: RunRecords, path: str | Path) -> Path:
    """PNG of the best score so far against trials and against wall time (journal clock)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = sorted((r for r in run.records.values() if r.done and r.t_result is not None), key=lambda r: r.t_result)
    best, xs_trials, xs_time, ys = float("-inf"), [], [], []
    for i, r in enumerate(done, start=1):
        if r.score is not None:
            best = max(best, r.score)
        if best > float("-inf"):
            xs_trials.append(i)
            xs_time.append(r.t_result)
            ys.append(best)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, xs, label in ((axes[0], xs_trials, "trials finished"), (axes[1], xs_time, "wall time (s)")):
        ax.step(xs, ys, where="post")
        ax.set_xlabel(label)
        ax.set_ylabel("best score so far")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{run.run_dir.name}: best so far")
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write a matplotlib figure as a PNG, atomically (a reader never sees half a file), and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
