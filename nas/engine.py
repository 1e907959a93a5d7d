"""Wiring a search from its resolved configuration: space, evaluator, method, run directory, dispatcher.

:func:`run_search` executes a :class:`~nas.config.SearchConfig` with trials on Ray Tune through
the one dispatcher (:func:`nas.ray_backend.dispatch`), whatever the method: a multi-trial
strategy (:class:`~nas.methods.multi_trial.MultiTrial`) or a one-shot method
(:data:`nas.methods.registry.ONE_SHOT`). :func:`run_benchmark` runs NAS-Bench-201 table lookups
under the benchmark's protocol (no Ray). Either takes the user's own space, strategy or
evaluator objects in place of the configured built-in ones (``nas.Experiment`` passes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from nas.benchmarks.nb201 import DEFAULT_CRITERIA, NB201Table, ProtocolResult, run_protocol
from nas.config import LOCAL, Execution, SearchConfig
from nas.evaluators import Evaluator, Trainer
from nas.journal import Journal
from nas.methods.multi_trial import MultiTrial, trial_payload
from nas.methods.registry import ONE_SHOT
from nas.objective import Criterion
from nas.precision import resolve_precision
from nas.progress import Progress, plot_progress
from nas.ray_backend import TrialSource, dispatch
from nas.run import SearchRun
from nas.rundir import PROGRESS_PNG, write_data_stats, write_space_spec
from nas.strategies import make_strategy
from nas.strategies.base import Strategy
from search_spaces.errors import InputError
from search_spaces.spaces import make_space
from search_spaces.spaces.base import SearchSpace


def resumed_trials(config: SearchConfig, run_dir: str | Path, explicit: bool) -> SearchConfig:
    """``config`` with the stored trial budget when the run exists and no budget was given explicitly
    (a rerun of the original command resumes an extended run instead of refusing it)."""
    if explicit:
        return config
    stored = Journal(run_dir).stored_config()
    if stored is None or not isinstance(stored.get("trials"), int):
        return config
    return replace(config, trials=stored["trials"])


def build_evaluator(config: SearchConfig, evaluator: Evaluator | None) -> Evaluator:
    """The run's evaluator: the user's, or the built-in trainer bound to the config's data and training."""
    if evaluator is not None:
        if isinstance(evaluator, Trainer) and config.data is not None:
            evaluator.configure(config.data, config.train)
        return evaluator
    if config.data is None:
        raise InputError(f"evaluator {config.evaluator!r} is not a built-in one: pass the evaluator object again "
                         "(nas.Experiment(evaluator=...)) to resume this run")
    return Trainer().configure(config.data, config.train)  # train None: a one-shot method trains by itself


def build_space(config: SearchConfig, evaluator: Evaluator | None,
                space: SearchSpace | None) -> tuple[SearchSpace, dict[str, Any] | None]:
    """The user's space as it is, or the configured built-in one sized for the evaluator's data, with
    the options it was built with (recorded in ``space.json``; None for a user's space)."""
    if space is not None:
        return space, None
    options = dict(config.space_options)
    if evaluator is not None and evaluator.input_shape is not None:
        options = {"input_shape": evaluator.input_shape, "num_classes": evaluator.num_classes, **options}
    return make_space(config.space, **options), options


def build_strategy(config: SearchConfig, space: SearchSpace, strategy: Strategy | None = None) -> Strategy:
    """The configured strategy (searching as many objectives as the configuration has), or the user's
    own instance, checked to search that many."""
    wanted = len(config.objective.criteria) if config.objective.multi else 1
    if strategy is not None:
        if strategy.num_objectives != wanted:
            raise InputError(f"the strategy instance searches {strategy.num_objectives} objective(s) but the "
                             f"objective has {wanted}: build it with num_objectives={wanted}")
        return strategy
    try:
        return make_strategy(config.strategy, space, seed=config.seed, num_objectives=wanted,
                             **config.strategy_options)
    except TypeError as err:
        raise InputError(f"bad option for strategy {config.strategy!r}: {err}") from None


def search_criteria(config: SearchConfig) -> tuple[Criterion, ...]:
    """The objectives a run records per trial: all of them when there are two or more, else none."""
    return config.objective.criteria if config.objective.multi else ()


def build_source(config: SearchConfig, run_dir: Path, *, space: SearchSpace | None = None,
                 strategy: Strategy | None = None, evaluator: Evaluator | None = None,
                 execution: Execution = LOCAL, log: Any = print) -> TrialSource:
    """The search method of ``config`` as the dispatcher's :class:`TrialSource` (nothing launched)."""
    if config.train is not None and execution.gpus_per_trial == 0:
        resolve_precision(config.train.precision, "cpu")  # e.g. fp16 without GPUs: refused before anything runs
    ev = build_evaluator(config, evaluator)
    ev.prepare(download=execution.download)
    built, options = build_space(config, ev, space)
    one_shot = ONE_SHOT.get(config.strategy)
    source: TrialSource
    if one_shot is not None:
        if not isinstance(ev, Trainer) or ev.data is None:
            raise InputError(f"strategy {config.strategy!r} trains its own supernet: it needs a built-in dataset")
        # a one-shot method takes model inputs (float32), not raw pixels
        source = one_shot(built, config.strategy_options, seed=config.seed, trials=config.trials,
                          data=ev.data.normalised(), run_dir=run_dir, config=config.to_dict(), table=config.table,
                          gpus=execution.gpus_per_trial, cpus=execution.cpus_per_trial,
                          remote=execution.address is not None, log=log)
    else:
        identify, feasibility = trial_payload(built, config.objective)
        run = SearchRun(run_dir, config.to_dict(), built, build_strategy(config, built, strategy), config.trials,
                        identify=identify, feasibility=feasibility, graph_of=lambda payload: payload[0],
                        criteria=search_criteria(config))
        seed = config.train.seed if config.train is not None else config.seed
        source = MultiTrial(run, ev, config.objective, seed=seed, gpus=execution.gpus_per_trial, log=log)
    if options is not None:  # after the run directory accepted the configuration
        write_space_spec(run_dir, config.space, options)
    if isinstance(ev, Trainer) and ev.data is not None and ev.data.mean:
        write_data_stats(run_dir, ev.data.name, ev.data.mean, ev.data.std, ev.data.max_pixel_value)
    return source


def run_search(config: SearchConfig, run_dir: str | Path, *, space: SearchSpace | None = None,
               strategy: Strategy | None = None, evaluator: Evaluator | None = None,
               execution: Execution = LOCAL, progress: Progress | None = None, callbacks: Sequence[Any] = (),
               log: Any = print) -> SearchRun:
    """Run (or resume) a search with trials on Ray Tune; returns the finished run."""
    run_dir = Path(run_dir)
    source = build_source(config, run_dir, space=space, strategy=strategy, evaluator=evaluator,
                          execution=execution, log=log)
    run = source.run
    if source.finished:
        run.close()
        return run
    if execution.address is not None and execution.storage is None:
        log(f"note: trials keep their checkpoints (weights) in {run_dir.resolve() / 'tune'} on the node that runs "
            "them; on a multi-node cluster pass --storage (a path every node mounts, or s3://... / gs://...) so they "
            "reach the run from every node")
    max_epochs = config.train.epochs if config.train is not None else 1
    dispatch(source, cpus_per_trial=execution.cpus_per_trial, gpus_per_trial=execution.gpus_per_trial,
             max_concurrent=execution.max_concurrent, scheduler=config.scheduler, max_epochs=max_epochs,
             address=execution.address, num_cpus=execution.num_cpus, max_retries=execution.max_retries,
             trial_timeout=execution.trial_timeout, storage=execution.storage,
             progress=progress or Progress(run.max_trials, quiet=True), callbacks=callbacks)
    if run.num_done:
        plot_progress(run, run_dir / PROGRESS_PNG)
    return run


def run_benchmark(config: SearchConfig, run_dir: str | Path,
                  strategy: Strategy | None = None) -> tuple[SearchRun, ProtocolResult]:
    """NAS-Bench-201 table-lookup search under the benchmark's protocol (no Ray, no training).

    Every query is charged, repeats included: the benchmark's protocol counts simulated training
    time, so the engine's dedup is off here (``dedup=False``).
    """
    if config.table is None or config.time_budget is None:
        raise InputError("benchmark mode needs a table and a time budget")
    table = NB201Table(config.table)
    criteria = config.objective.criteria if config.objective.objectives else DEFAULT_CRITERIA
    for criterion in criteria:
        table.column(criterion.name)  # a name that is not an objective column: one error, before any query
    space = make_space("nb201")
    run = SearchRun(run_dir, config.to_dict(), space, build_strategy(config, space, strategy), config.trials,
                    identify=lambda arch: (space.to_string(arch), arch), dedup=False, durable=False,
                    snapshot_every=0, criteria=search_criteria(config))

    def ask() -> tuple[int, Any] | None:
        nxt = run.next_trial()
        return None if nxt is None else (nxt[0].trial, nxt[1])

    def tell(trial: int, fitness: float | tuple[float, ...]) -> None:
        signed = fitness if isinstance(fitness, tuple) else (fitness,)
        values = [c.signed(f) for c, f in zip(criteria, signed, strict=True)]  # signing twice: the column's value
        run.finish(trial, signed[0], metrics={c.name: v for c, v in zip(criteria, values, strict=True)},
                   values=values if run.multi else None)

    done = [space.from_json(r.arch) for r in sorted(run.records.values(), key=lambda r: r.trial) if r.done]
    try:
        result = run_protocol(ask, tell, table, time_budget=config.time_budget, done=done, criteria=criteria)
    finally:
        run.close()
    return run, result
