"""A multi-objective run's Pareto front as a user sees it: the table, picking one member, the plot.

* :func:`front_rows`: ``nas show RUN --pareto`` (and the end of ``nas search``): one row per front
  member, best first by the first objective, with every objective in its own units.
* :func:`pick`: ``nas export RUN --pareto-pick SPEC``. ``SPEC`` is a position on that table
  (``0`` is its first row) or conditions joined by commas, each ``NAME OP NUMBER`` with ``OP`` one
  of ``<``, ``<=``, ``>``, ``>=`` and ``NAME`` an objective or any metric the trials recorded
  (e.g. ``"latency_pixel3_ms<5"``, ``"latency_ms<=3,params<500000"``); of the front members that
  meet them all, the best by the first objective.
* :func:`plot_front`: PNG of every successful trial in the plane of the first two objectives with
  the front highlighted and drawn as a staircase.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.progress import save_figure
from nas.rundir import RunRecords, TrialRecord
from search_spaces.errors import InputError

PARETO_PNG = "pareto.png"
_OPERATORS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge, "<": operator.lt,
                                                         ">": operator.gt}
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def _require_multi(run: RunRecords) -> None:
    if not run.multi:
        raise InputError(f"run {run.run_dir} optimises one objective: it has a leaderboard, not a Pareto front "
                         "(search with --objectives A,B for one)")


def front_rows(run: RunRecords) -> list[dict[str, Any]]:
    """The front as table rows: ``index``, ``trial``, one column per objective, ``epochs``, ``hash``, ``arch``."""
    _require_multi(run)
    rows = []
    for index, record in enumerate(run.pareto_front()):
        assert record.values is not None
        row: dict[str, Any] = {"index": index, "trial": record.trial}
        for criterion, value in zip(run.criteria, record.values, strict=True):
            row[f"{criterion.name} ({'max' if criterion.maximise else 'min'})"] = f"{value:.6g}"
        row.update({"epochs": record.metrics.get("epochs_run", record.metrics.get("epoch", "-")),
                    "hash": record.hash[:12], "arch": run.describe(record)})
        rows.append(row)
    return rows


def _value(run: RunRecords, record: TrialRecord, name: str) -> float:
    names = [c.name for c in run.criteria]
    if name in names and record.values is not None:
        return record.values[names.index(name)]
    if isinstance(record.metrics.get(name), (int, float)):
        return float(record.metrics[name])
    raise InputError(f"--pareto-pick: trial {record.trial} has no value for {name!r}; name an objective "
                     f"({', '.join(names)}) or a recorded metric ({', '.join(sorted(record.metrics))})")


def pick(run: RunRecords, spec: str) -> TrialRecord:
    """The front member ``spec`` names (see the module docstring); InputError saying why none does."""
    _require_multi(run)
    front = run.pareto_front()
    if not front:
        raise InputError(f"run {run.run_dir} has no successful trial yet, so no Pareto front to pick from")
    text = spec.strip()
    if re.fullmatch(r"\d+", text):
        index = int(text)
        if index >= len(front):
            raise InputError(f"--pareto-pick {index}: the front of run {run.run_dir} has {len(front)} members "
                             f"(0..{len(front) - 1}); see `nas show {run.run_dir} --pareto`")
        return front[index]
    conditions = []
    for part in text.split(","):
        match = _CONDITION.match(part)
        if match is None:
            raise InputError(f"--pareto-pick {spec!r}: {part.strip()!r} is not a condition like "
                             "'latency_ms<5' (NAME <, <=, > or >= NUMBER) nor a front index like 0")
        conditions.append((match[1], _OPERATORS[match[2]], float(match[3])))
    chosen = [r for r in front if all(test(_value(run, r, name), bound) for name, test, bound in conditions)]
    if not chosen:
        raise InputError(f"--pareto-pick {spec!r}: none of the {len(front)} front members of run {run.run_dir} meets "
                         f"it; see `nas show {run.run_dir} --pareto`")
    return chosen[0]  # the front is ordered best first by the first objective


def plot_front(run: RunRecords, path: str | Path) -> Path:
    """PNG of all successful full-budget trials in the first two objectives, the front highlighted."""
    _require_multi(run)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_name, y_name = run.criteria[0].name, run.criteria[1].name
    scored = [r for r in run.records.values() if r.values is not None and r.budget is None]
    front = run.pareto_front()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    ax.scatter([r.values[0] for r in scored], [r.values[1] for r in scored],  # type: ignore[index]
               s=14, color="0.6", label=f"trials ({len(scored)})")
    ordered = sorted(front, key=lambda r: r.values[0])  # type: ignore[index]
    ax.step([r.values[0] for r in ordered], [r.values[1] for r in ordered], where="post",  # type: ignore[index]
            color="C3", alpha=0.6)
    ax.scatter([r.values[0] for r in ordered], [r.values[1] for r in ordered],  # type: ignore[index]
               s=30, color="C3", label=f"Pareto front ({len(front)})", zorder=3)
    ax.set_xlabel(f"{x_name} ({'max' if run.criteria[0].maximise else 'min'})")
    ax.set_ylabel(f"{y_name} ({'max' if run.criteria[1].maximise else 'min'})")
    extra = f"; objectives {', '.join(c.name for c in run.criteria[2:])} not shown" if len(run.criteria) > 2 else ""
    ax.set_title(f"{run.run_dir.name}: Pareto front{extra}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
