"""What a trial optimises: a validation metric (or a list of objectives), hard resource limits and
soft resource penalties.

Use by the engine, in order:

1. before training, :meth:`Objective.check_limits` with the architecture's measured cost
   (:func:`search_spaces.analysis.measure`: params, FLOPs for one sample); a reason string means
   the trial is recorded as failed (infeasible) without training;
2. after training (and, when :attr:`Objective.needs_latency`, measuring latency on the trial's
   device with :func:`nas.trainer.measure_latency_ms`), :meth:`Objective.evaluate` gives
   ``(score, None)`` or ``(None, reason)`` for an infeasible trial (latency over its limit).

Score (higher is better)::

    metrics[metric] - params_penalty * params / 1e6 - flops_penalty * flops / 1e9
                    - latency_penalty * latency_ms

FLOPs follow torch's counter (a multiply-add counts 2), so ``max_mflops`` bounds ``flops / 1e6``.

Objectives as a list (``objectives``, e.g. ``("val_acc", "latency_ms")``): each is a
:class:`Criterion`, a metric name with a direction (``name:max`` / ``name:min``; without one,
accuracies are maximised and latency, parameters, FLOPs, losses and errors minimised). The
names ``params``, ``flops`` and ``latency_ms`` are the trial's measured cost (latency on the
trial's device, :data:`LATENCY_PROTOCOL`); any other name is a metric the evaluator reports (in
benchmark mode: a column of the table). With two or more objectives the search is
multi-objective: :meth:`Objective.values` gives each trial's vector, strategies receive it signed
so that every component is maximised, and a run's result is its Pareto front. Its scalar
``score`` is then the first objective, signed (ASHA and the leaderboard rank by it). Penalties
fold costs into one score and do not combine with a list; hard limits do (they are constraints).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from search_spaces.errors import InputError

METRICS: tuple[str, ...] = ("val_acc", "best_val_acc")
COST_METRICS: tuple[str, ...] = ("params", "flops", "latency_ms")
"""Objective names every trial measures: trainable parameters, FLOPs of one sample, latency (ms)."""
LATENCY_PROTOCOL = "batch 1, 5 warm-up passes, median of 20, eval mode, no_grad, on the trial's device"
"""How ``latency_ms`` is measured (:func:`nas.trainer.measure_latency_ms`); recorded with each result."""
_MAXIMISED_WORDS = ("acc", "accuracy", "auc", "f1", "precision", "recall", "score", "reward", "iou", "map")
_MINIMISED_WORDS = ("latency", "params", "flops", "mflops", "loss", "error", "err", "time", "seconds", "ms",
                    "memory", "energy", "size", "mb", "m")


class ObjectiveMissing(InputError):
    """A trial's metrics lack an objective: the evaluator and the objectives disagree (a setup error,
    not the architecture's failure: the search stops with this message)."""


@dataclass(frozen=True)
class Criterion:
    """One objective of a search: the metric ``name`` and whether it is maximised."""

    name: str
    maximise: bool

    def signed(self, value: float) -> float:
        """``value`` oriented so that higher is better (negated when the metric is minimised)."""
        return float(value) if self.maximise else -float(value)

    def unsigned(self, value: float) -> float:
        """The metric's own value back from :meth:`signed`."""
        return self.signed(value)

    def __str__(self) -> str:
        return f"{self.name}:{'max' if self.maximise else 'min'}"

    @classmethod
    def parse(cls, text: str) -> Criterion:
        """``"name"``, ``"name:max"`` or ``"name:min"``; the direction of a bare name from its words
        (:func:`default_direction`). InputError for an empty name, a bad suffix or an unclear name."""
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"an objective must be a metric name like 'val_acc' or 'latency_ms:min', got {text!r}")
        name, _, direction = text.strip().partition(":")
        name, direction = name.strip(), direction.strip().lower()
        if not name:
            raise InputError(f"objective {text!r} has no metric name; write NAME, NAME:max or NAME:min")
        if direction in ("max", "maximise", "maximize"):
            return cls(name, True)
        if direction in ("min", "minimise", "minimize"):
            return cls(name, False)
        if direction:
            raise InputError(f"objective {text!r}: direction must be ':max' or ':min', got {direction!r}")
        maximise = default_direction(name)
        if maximise is None:
            raise InputError(f"objective {name!r}: cannot tell whether to maximise or minimise it; write "
                             f"'{name}:max' or '{name}:min'")
        return cls(name, maximise)


def default_direction(name: str) -> bool | None:
    """True (maximise) for accuracy-like names, False (minimise) for cost- and loss-like names
    (judged by the name's words, e.g. ``latency_pixel3_ms``: latency), None when unclear."""
    words = [w for w in name.lower().replace("-", "_").split("_") if w]
    if any(w in _MAXIMISED_WORDS for w in words):
        return True
    if any(w in _MINIMISED_WORDS for w in words):
        return False
    return None


def parse_objectives(given: str | Sequence[str]) -> tuple[str, ...]:
    """Objectives as given (``"a,b:min"`` or a list of such names) in their stored form, each
    ``name:max`` or ``name:min``; InputError for a bad or repeated one."""
    if isinstance(given, str):
        if not given.strip():
            raise InputError("objectives: empty; give metric names like 'val_acc,latency_ms', or leave them out")
        items = given.split(",")
    elif isinstance(given, (list, tuple)):
        items = list(given)
    else:
        raise InputError(f"objectives must be a list of metric names or a comma-separated string, got {given!r}")
    criteria = [Criterion.parse(item) for item in items]
    names = [c.name for c in criteria]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"objective(s) {repeated} given more than once; list each metric once")
    return tuple(str(c) for c in criteria)


@dataclass
class Objective:
    """Maximise ``metric`` minus resource penalties, subject to hard limits (``None`` = no limit).

    ``max_params``: trainable parameters; ``max_mflops``: MFLOPs of one forward pass of one
    sample; ``max_latency_ms``: batch-1 forward latency on the trial's device. Penalties are per
    million parameters, per GFLOP and per millisecond, subtracted from the metric (a fraction in
    [0, 1]): e.g. ``params_penalty=0.01`` costs one accuracy point per million parameters.
    """

    metric: str = "val_acc"
    max_params: int | None = None
    max_mflops: float | None = None
    max_latency_ms: float | None = None
    params_penalty: float = 0.0
    flops_penalty: float = 0.0
    latency_penalty: float = 0.0
    objectives: tuple[str, ...] = ()

    # ------------------------------------------------------------------ configuration
    def validate(self) -> Objective:
        """Raise ``ValueError`` naming the first bad field; returns ``self`` for chaining."""
        if self.metric not in METRICS:
            raise InputError(f"Objective.metric must be one of {METRICS}, got {self.metric!r}; any other metric "
                             "can be an objective (objectives=[NAME] / --objectives NAME)")
        given = self.objectives
        self.objectives = () if isinstance(given, (list, tuple)) and not given else parse_objectives(given)
        if self.objectives:
            if self.metric != "val_acc":
                raise InputError(f"Objective.metric {self.metric!r} and objectives {list(self.objectives)} both "
                                 "given: name the metric as an objective instead")
            if self.has_penalties:
                raise InputError("Objective: penalties fold costs into one score and do not combine with a list of "
                                 "objectives; make the cost an objective (e.g. latency_ms) or drop the list")
        if self.max_params is not None and (not isinstance(self.max_params, int) or isinstance(self.max_params, bool)
                                            or self.max_params < 1):
            raise InputError(f"Objective.max_params must be a positive int or None, got {self.max_params!r}")
        for name in ("max_mflops", "max_latency_ms"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and value > 0):
                raise InputError(f"Objective.{name} must be a positive finite number or None, got {value!r}")
        for name in ("params_penalty", "flops_penalty", "latency_penalty"):
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0):
                raise InputError(f"Objective.{name} must be a finite number >= 0, got {value!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data; ``objectives`` only when given (so single-objective configurations stored
        before objectives existed compare equal)."""
        data = asdict(self)
        if data["objectives"]:
            data["objectives"] = list(data["objectives"])
        else:
            del data["objectives"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Objective:
        """Inverse of :meth:`to_dict` (missing keys take defaults); validated, unknown keys rejected."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"Objective: unknown field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data).validate()

    @property
    def has_limits(self) -> bool:
        return any(v is not None for v in (self.max_params, self.max_mflops, self.max_latency_ms))

    @property
    def has_penalties(self) -> bool:
        return any(v > 0 for v in (self.params_penalty, self.flops_penalty, self.latency_penalty))

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        """What is optimised: the objectives, or the one maximised ``metric``."""
        if self.objectives:
            return tuple(Criterion.parse(text) for text in self.objectives)
        return (Criterion(self.metric, True),)

    @property
    def multi(self) -> bool:
        """Whether the search is multi-objective (two or more objectives)."""
        return len(self.objectives) >= 2

    @property
    def primary(self) -> str:
        """The metric a trial's returned float stands for (the first objective, or ``metric``)."""
        return self.criteria[0].name

    @property
    def needs_latency(self) -> bool:
        """Whether :meth:`evaluate` needs a measured latency (a latency limit, penalty or objective)."""
        return (self.max_latency_ms is not None or self.latency_penalty > 0
                or any(c.name == "latency_ms" for c in self.criteria))

    def describe(self) -> str:
        """One line, e.g. ``maximise val_acc - 0.01/M params; params <= 1M, latency <= 5 ms``."""
        if self.objectives:
            goals = ", ".join(f"{'maximise' if c.maximise else 'minimise'} {c.name}" for c in self.criteria)
            return goals + "; " + (self._limits() or "no limits")
        terms = [self.metric]
        for weight, unit in ((self.params_penalty, "M params"), (self.flops_penalty, "GFLOP"),
                             (self.latency_penalty, "ms latency")):
            if weight > 0:
                terms.append(f"{weight:g}/{unit}")
        return "maximise " + " - ".join(terms) + "; " + (self._limits() or "no limits")

    def _limits(self) -> str:
        limits = []
        if self.max_params is not None:
            limits.append(f"params <= {self.max_params:,}")
        if self.max_mflops is not None:
            limits.append(f"FLOPs <= {self.max_mflops:g} M")
        if self.max_latency_ms is not None:
            limits.append(f"latency <= {self.max_latency_ms:g} ms")
        return ", ".join(limits)

    # ------------------------------------------------------------------ evaluation
    def check_limits(self, params: int, flops: int) -> str | None:
        """Reason the architecture breaks a hard params/FLOPs limit, or None when it is feasible."""
        if self.max_params is not None and params > self.max_params:
            return f"params {params:,} > limit {self.max_params:,}"
        if self.max_mflops is not None and flops / 1e6 > self.max_mflops:
            return f"FLOPs {flops / 1e6:.4g} M > limit {self.max_mflops:g} M"
        return None

    def check_latency(self, latency_ms: float | None) -> str | None:
        """Reason the measured latency breaks the limit, or None (also when there is no limit)."""
        if self.max_latency_ms is None:
            return None
        if latency_ms is None:
            raise InputError("Objective has a latency limit but no latency was measured")
        if not latency_ms <= self.max_latency_ms:  # NaN counts as over the limit
            return f"latency {latency_ms:.4g} ms > limit {self.max_latency_ms:g} ms"
        return None

    def penalty(self, params: int, flops: int, latency_ms: float | None = None) -> float:
        """Total soft penalty (in metric units) for the given cost."""
        total = self.params_penalty * params / 1e6 + self.flops_penalty * flops / 1e9
        if self.latency_penalty > 0:
            if latency_ms is None:
                raise InputError("Objective has a latency penalty but no latency was measured")
            total += self.latency_penalty * latency_ms
        return total

    def score(self, metrics: dict[str, Any], params: int, flops: int, latency_ms: float | None = None) -> float:
        """``metrics[metric]`` minus the penalties; ignores the hard limits (see :meth:`evaluate`). With a
        list of objectives: the first one, signed (higher is better)."""
        if self.objectives:
            first = self.criteria[0]
            return first.signed(self.values(metrics, params, flops, latency_ms, self.criteria[:1])[0])
        if self.metric not in metrics:
            raise ObjectiveMissing(f"Objective: metric {self.metric!r} missing from the trial's metrics "
                                   f"(has {sorted(metrics)})")
        return float(metrics[self.metric]) - self.penalty(params, flops, latency_ms)

    def values(self, metrics: dict[str, Any], params: int, flops: int, latency_ms: float | None = None,
               criteria: tuple[Criterion, ...] | None = None) -> tuple[float, ...]:
        """Each objective's own value (not signed): cost names from the arguments, others from
        ``metrics``; InputError naming a missing one."""
        cost = {"params": params, "flops": flops, "latency_ms": latency_ms}
        out = []
        for criterion in criteria or self.criteria:
            value = cost[criterion.name] if criterion.name in cost else metrics.get(criterion.name)
            if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ObjectiveMissing(f"objective {criterion.name!r} is not among the trial's metrics (it reported "
                                       f"{sorted(metrics)}); report it from the evaluator or fix the objectives")
            out.append(float(value))
        return tuple(out)

    def signed_values(self, values: Sequence[float]) -> tuple[float, ...]:
        """``values`` (one per objective) oriented so that each is maximised (what strategies are told)."""
        return tuple(c.signed(v) for c, v in zip(self.criteria, values, strict=True))

    def evaluate(self, metrics: dict[str, Any], params: int, flops: int,
                 latency_ms: float | None = None) -> tuple[float | None, str | None]:
        """``(score, None)`` for a feasible trial, ``(None, reason)`` for one that breaks a hard limit
        (params, FLOPs or latency) or whose score is not finite."""
        reason = self.check_limits(params, flops) or self.check_latency(latency_ms)
        if reason is not None:
            return None, reason
        if self.objectives:
            values = self.values(metrics, params, flops, latency_ms)
            bad = [f"{c.name}={v}" for c, v in zip(self.criteria, values, strict=True) if not math.isfinite(v)]
            if bad:
                return None, f"non-finite objective value(s): {', '.join(bad)}"
            return self.criteria[0].signed(values[0]), None
        value = self.score(metrics, params, flops, latency_ms)
        if not math.isfinite(value):
            return None, f"non-finite score ({value}) from {self.metric}={metrics[self.metric]!r}"
        return value, None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
