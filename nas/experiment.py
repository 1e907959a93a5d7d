"""The Python API: :class:`Experiment` runs a search on your space, evaluator and strategy; :class:`Result`.

``nas search`` is a thin layer over it: a run made here can be shown, exported and retrained
with the CLI, and a CLI run resumed from here (pass the same settings). Rerunning an
experiment on the same ``run_dir`` resumes it; a larger ``trials`` extends it; any other change
is refused with the list of differences.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.config import LOCAL, Execution, SearchConfig, merge, resolve_config
from nas.engine import resumed_trials, run_benchmark, run_search
from nas.evaluators import Evaluator, Trainer, as_evaluator
from nas.objective import Objective
from nas.progress import Progress
from nas.rundir import RunRecords, TrialRecord
from nas.strategies.base import Strategy
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace


@dataclass(frozen=True)
class TrialResult:
    """One finished trial: ``arch`` (the space's member), ``score``, ``trial`` (id), ``metrics``;
    multi-objective, ``values``: each objective's value by name."""

    trial: int
    arch: Hashable
    score: float | None
    status: str
    metrics: dict[str, Any]
    reason: str | None
    hash: str
    values: dict[str, float] | None = None


class Result:
    """A search's outcome: ``best``, ``trials`` (every one, by id), ``leaderboard()``, ``run_dir``;
    multi-objective, ``pareto_front`` (best first by the first objective; ``best`` is its first)."""

    def __init__(self, run: RunRecords, space: SearchSpace, protocol: Any = None) -> None:
        self.run_dir = run.run_dir
        self._space = space
        self._criteria = run.criteria
        self.trials = [self._trial(r) for r in sorted(run.records.values(), key=lambda r: r.trial) if r.done]
        self._by_id = {t.trial: t for t in self.trials}
        self._board = [r.trial for r in run.leaderboard(top=len(run.records) or 1)]
        top = run.top()
        self.best: TrialResult | None = None if top is None else self._by_id[top.trial]
        self.num_failed = run.num_failed
        self.protocol = protocol  # benchmark mode: the protocol's ProtocolResult
        self.pareto_front: list[TrialResult] = [self._by_id[r.trial] for r in run.pareto_front()] if run.multi else []

    def _trial(self, r: TrialRecord) -> TrialResult:
        values = None if r.values is None else {c.name: v for c, v in zip(self._criteria, r.values, strict=True)}
        return TrialResult(r.trial, self._space.from_json(r.arch), r.score, r.status or "pending", dict(r.metrics),
                           r.reason, r.hash, values)

    def leaderboard(self, top: int = 10) -> list[TrialResult]:
        """Successful trials, best first (ties: lowest id)."""
        return [self._by_id[t] for t in self._board[:top]]

    def __repr__(self) -> str:
        best = "none" if self.best is None else f"trial {self.best.trial} score {self.best.score:.4f}"
        return f"Result({len(self.trials)} trials, {self.num_failed} failed, best {best}, run_dir={self.run_dir})"


class Experiment:
    """A search, configured in Python.

    ``space``: a built-in space name (``"macro"``, the default; ``"nb201"``, ``"darts"``, ``"binary"``) or any
    :class:`~search_spaces.spaces.base.SearchSpace` instance, including your own.
    ``evaluator``: the built-in :class:`~nas.evaluators.Trainer` (the default: digits) or your
    function ``evaluate(model, trial) -> float | Mapping[str, float]`` (see :mod:`nas.evaluators`),
    run inside the Ray trial on its resources. ``strategy``: a name (``"evolution"``,
    ``"evolution-annealed"``, ``"random"``, ``"tpe"``, ``"nsga2"``, ``"combo"``, ``"darts"``) with
    ``strategy_options``, or any :class:`~nas.strategies.base.Strategy` instance.
    ``objective``: an :class:`~nas.objective.Objective` or its fields as a mapping; several
    objectives (``objective={"objectives": ["val_acc", "latency_ms"]}``) make a multi-objective
    search whose :class:`Result` has a ``pareto_front``; ``objectives=[...]`` says the same.
    ``resources``: ``{"cpu": 1, "gpu": 0.5}`` per trial; ``address``: a Ray cluster ("auto" or
    host:port; default: an embedded local Ray). ``callbacks``: Ray Tune callbacks (loggers).
    ``storage``: where trials' checkpoints go (a path every node sees, or ``s3://...``; default
    ``RUN/tune``); ``max_retries``: runs of a trial again after its worker died (default 2);
    ``trial_timeout``: seconds before a still-running trial is ended as failed.
    ``benchmark="nb201"`` with ``table=PATH``: table lookups under the NAS-Bench-201 protocol.
    Other keyword arguments are configuration keys (``scheduler``, ``time_budget``, ``space_options``).
    """

    def __init__(self, space: str | SearchSpace | None = None, evaluator: Evaluator | Callable[..., Any] | None = None,
                 strategy: str | Strategy = "evolution", trials: int | None = None, run_dir: str | Path | None = None,
                 seed: int = 0, *, strategy_options: Mapping[str, Any] | None = None,
                 objective: Objective | Mapping[str, Any] | None = None, objectives: Sequence[str] | str | None = None,
                 resources: Mapping[str, float] | None = None,
                 address: str | None = None, max_concurrent: int | None = None, num_cpus: int | None = None,
                 callbacks: Sequence[Any] = (), download: bool = False, quiet: bool = True,
                 max_retries: int = 2, trial_timeout: float | None = None, storage: str | None = None,
                 config: Mapping[str, Any] | None = None, **settings: Any) -> None:
        given: dict[str, Any] = dict(config or {})
        self.space = space if isinstance(space, SearchSpace) else None
        self.strategy = strategy if isinstance(strategy, Strategy) else None
        self.evaluator = None if evaluator is None else as_evaluator(evaluator)
        if isinstance(space, str):
            given["space"] = space
        elif isinstance(space, SearchSpace):
            given["space"] = space.name or type(space).__name__
        elif space is not None:
            raise InputError(f"space must be a space name or a SearchSpace instance, got {space!r}")
        if isinstance(strategy, str):
            given["strategy"] = strategy
        elif isinstance(strategy, Strategy):
            if strategy.space is not self.space and self.space is not None:
                raise InputError("the strategy instance was built on another space than the experiment's")
            given["strategy"] = strategy.name or type(strategy).__name__
            seed = strategy.seed
        else:
            raise InputError(f"strategy must be a name or a Strategy instance, got {strategy!r}")
        given["seed"] = seed
        if trials is not None:
            given["trials"] = trials
        if strategy_options:
            if self.strategy is not None:
                raise InputError("strategy_options configure a strategy by name; a Strategy instance is already built")
            given["strategy_options"] = dict(strategy_options)
        if objective is not None:
            given["objective"] = objective.to_dict() if isinstance(objective, Objective) else dict(objective)
        if objectives is not None:
            given["objective"] = {**given.get("objective", {}), "objectives": objectives}
        if isinstance(self.evaluator, Trainer):
            given = merge(given, {"evaluator": "trainer", "data": self.evaluator.data_options,
                                  "train": self.evaluator.train_options})
        elif self.evaluator is not None:
            given["evaluator"] = self.evaluator.name
        given.update(settings)
        self.trials_explicit = trials is not None or "trials" in (config or {})
        self.config: SearchConfig = resolve_config(
            given, strategy_class=type(self.strategy) if self.strategy is not None else None,
            space_class=type(self.space) if self.space is not None else None)
        if self.space is None and self.strategy is not None:
            self.space = self.strategy.space
        res = dict(resources or {})
        unknown = sorted(set(res) - {"cpu", "gpu"})
        if unknown:
            raise InputError(f"resources: unknown key(s) {unknown}; use 'cpu' and 'gpu' (per trial)")
        self.execution = Execution(address=address, cpus_per_trial=float(res.get("cpu", 1.0)),
                                   gpus_per_trial=float(res.get("gpu", 0.0)), max_concurrent=max_concurrent,
                                   num_cpus=num_cpus, download=download, max_retries=max_retries,
                                   trial_timeout=trial_timeout, storage=storage)
        self.run_dir = Path(run_dir) if run_dir is not None else self.config.default_run_dir()
        self.callbacks = list(callbacks)
        self.quiet = quiet

    @classmethod
    def from_config(cls, config: SearchConfig, run_dir: str | Path | None = None, *, execution: Execution = LOCAL,
                    trials_explicit: bool = True, **kwargs: Any) -> Experiment:
        """An experiment for an already resolved configuration (the CLI's path)."""
        exp = cls.__new__(cls)
        exp.space = exp.strategy = exp.evaluator = None
        exp.config = config
        exp.execution = execution
        exp.trials_explicit = trials_explicit
        exp.run_dir = Path(run_dir) if run_dir is not None else config.default_run_dir()
        exp.callbacks = list(kwargs.pop("callbacks", ()))
        exp.quiet = kwargs.pop("quiet", True)
        if kwargs:
            raise InputError(f"Experiment.from_config: unknown argument(s) {sorted(kwargs)}")
        return exp

    def run(self, progress: Progress | None = None, log: Callable[[str], None] | None = None) -> Result:
        """Run (or resume) the search; returns its :class:`Result`."""
        config = resumed_trials(self.config, self.run_dir, self.trials_explicit)
        if config.benchmark:
            run, protocol = run_benchmark(config, self.run_dir, self.strategy)
            return Result(run, run.space, protocol=protocol)
        say = log if log is not None else ((lambda _line: None) if self.quiet else print)
        run = run_search(config, self.run_dir, space=self.space, strategy=self.strategy, evaluator=self.evaluator,
                         execution=self.execution, progress=progress or Progress(config.trials, quiet=self.quiet),
                         callbacks=self.callbacks, log=say)
        return Result(run, run.space)
