"""What a trial optimises: a validation metric, hard resource limits and soft resource penalties.

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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from search_spaces.errors import InputError

METRICS: tuple[str, ...] = ("val_acc", "best_val_acc")


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

    # ------------------------------------------------------------------ configuration
    def validate(self) -> Objective:
        """Raise ``ValueError`` naming the first bad field; returns ``self`` for chaining."""
        if self.metric not in METRICS:
            raise InputError(f"Objective.metric must be one of {METRICS}, got {self.metric!r}")
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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Objective:
        """Inverse of :meth:`to_dict` (missing keys take defaults); validated, unknown keys rejected."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"Objective: unknown field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data).validate()

    @property
    def needs_latency(self) -> bool:
        """Whether :meth:`evaluate` needs a measured latency (a latency limit or penalty is set)."""
        return self.max_latency_ms is not None or self.latency_penalty > 0

    def describe(self) -> str:
        """One line, e.g. ``maximise val_acc - 0.01/M params; params <= 1M, latency <= 5 ms``."""
        terms = [self.metric]
        for weight, unit in ((self.params_penalty, "M params"), (self.flops_penalty, "GFLOP"),
                             (self.latency_penalty, "ms latency")):
            if weight > 0:
                terms.append(f"{weight:g}/{unit}")
        text = "maximise " + " - ".join(terms)
        limits = []
        if self.max_params is not None:
            limits.append(f"params <= {self.max_params:,}")
        if self.max_mflops is not None:
            limits.append(f"FLOPs <= {self.max_mflops:g} M")
        if self.max_latency_ms is not None:
            limits.append(f"latency <= {self.max_latency_ms:g} ms")
        return text + ("; " + ", ".join(limits) if limits else "; no limits")

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
        """``metrics[metric]`` minus the penalties; ignores the hard limits (see :meth:`evaluate`)."""
        if self.metric not in metrics:
            raise InputError(f"Objective: metric {self.metric!r} missing from the trial's metrics "
                             f"(has {sorted(metrics)})")
        return float(metrics[self.metric]) - self.penalty(params, flops, latency_ms)

    def evaluate(self, metrics: dict[str, Any], params: int, flops: int,
                 latency_ms: float | None = None) -> tuple[float | None, str | None]:
        """``(score, None)`` for a feasible trial, ``(None, reason)`` for one that breaks a hard limit
        (params, FLOPs or latency) or whose score is not finite."""
        reason = self.check_limits(params, flops) or self.check_latency(latency_ms)
        if reason is not None:
            return None, reason
        value = self.score(metrics, params, flops, latency_ms)
        if not math.isfinite(value):
            return None, f"non-finite score ({value}) from {self.metric}={metrics[self.metric]!r}"
        return value, None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
