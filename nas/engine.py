"""Wiring a search from its configuration: space, strategy, data, objective, run directory, backend.

``search_config(...)`` builds the plain-data configuration stored in the run directory (a rerun
with the same configuration resumes); ``run_search(config)`` executes it with trials on Ray Tune,
``run_benchmark(config)`` with trials as NAS-Bench-201 table lookups.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.journal import atomic_write_json
from nas.objective import Objective
from nas.progress import Progress, plot_progress
from nas.run import SearchRun
from nas.strategies import STRATEGIES, make_strategy
from nas.trainer import TrainConfig
from search_spaces.analysis import Cost, measure
from search_spaces.ir import ArchGraph
from search_spaces.spaces import SPACES, make_space
from search_spaces.spaces.base import SearchSpace

# evolution defaults sized for small budgets (NB-201's R_EA: P=10, S=3); the paper's P=100, S=25
# need thousands of trials
DEFAULT_STRATEGY_OPTIONS: dict[str, dict[str, Any]] = {
    "evolution": {"population_size": 10, "sample_size": 3},
    "evolution-annealed": {"population_size": 10, "sample_size": 3, "initial_mutations": 3, "rounds_per_step": 10},
    "random": {},
    "tpe": {},
    "combo": {},  # COMBO's own defaults (nas.strategies.combo.Combo)
}


# DARTS is not an ask/tell strategy: each of its trials is a whole search (nas.darts.runner)
DARTS = "darts"
STRATEGY_NAMES = sorted([*STRATEGIES, DARTS])

DOWNLOADABLE = ("cifar10", "mnist", "fashion_mnist")
# the run directory's record of how its space was built: {"space": name, "options": {...}} with the
# dataset's input shape and classes, so a trial's exact graph can be rebuilt (nas.show.graph_of_trial)
SPACE_FILE = "space.json"


def default_run_dir(config: dict[str, Any]) -> str:
    data = config["benchmark"] or config["dataset"]
    return str(Path("runs") / f"{config['strategy']}-{config['space']}-{data}-seed{config['seed']}")


def check_config(config: dict[str, Any]) -> None:
    """ValueError with one clear line for every bad value the CLI could not catch by type."""
    if config["strategy"] not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {config['strategy']!r}; choose one of {STRATEGY_NAMES}")
    if config["space"] not in SPACES:
        raise ValueError(f"unknown search space {config['space']!r}; choose one of {sorted(SPACES)}")
    if config["trials"] < 1:
        raise ValueError(f"--trials must be >= 1, got {config['trials']}")
    TrainConfig.from_dict(config["train"])
    Objective.from_dict(config["objective"])
    if config["benchmark"] is not None:
        if config["benchmark"] != "nb201":
            raise ValueError(f"unknown benchmark {config['benchmark']!r}; the only one is 'nb201'")
        if config["space"] != "nb201":
            raise ValueError("--benchmark nb201 searches the nb201 space; pass --space nb201 (or leave it out)")
        if not config.get("table"):
            raise ValueError("--benchmark nb201 needs --table PATH (the NAS-Bench-201 CSV)")
        if config["strategy"] == DARTS:
            raise ValueError("--strategy darts trains a supernet on data, it does not query a table: search "
                             "--space nb201 on a dataset and pass --table PATH (without --benchmark) to look the "
                             "derived cell up in NAS-Bench-201")
        if not (config.get("time_budget") or 0) > 0:
            raise ValueError(f"--time-budget must be > 0 simulated seconds, got {config.get('time_budget')}")
    if config["strategy"] == DARTS:
        from nas.darts.adapters import adapter_for
        from nas.darts.runner import darts_options

        darts_options(config)
        adapter_for(make_space(config["space"]))


def build_strategy(config: dict[str, Any], space: SearchSpace) -> Any:
    options = {**DEFAULT_STRATEGY_OPTIONS.get(config["strategy"], {}), **config["strategy_options"]}
    try:
        return make_strategy(config["strategy"], space, seed=config["seed"], **options)
    except TypeError as err:
        raise ValueError(f"bad option for strategy {config['strategy']!r}: {err}") from None


def trial_payload(space: SearchSpace, objective: Objective) -> tuple[
        Callable[[Any], tuple[str, tuple[ArchGraph, Cost | None]]], Callable[[Any], str | None]]:
    """``identify`` and ``feasibility`` for :class:`SearchRun` when trials train graphs.

    The payload is (graph, cost). Params/FLOPs are measured in the driver only when a hard limit
    needs them before dispatch; otherwise the trial measures them on its worker, off the
    driver's critical path (measuring costs tens of ms per graph).
    """
    limited = objective.max_params is not None or objective.max_mflops is not None

    def identify(arch: Any) -> tuple[str, tuple[ArchGraph, Cost | None]]:
        graph = space.to_graph(arch)
        return graph.canonical_hash(), (graph, measure(graph) if limited else None)

    def feasibility(payload: tuple[ArchGraph, Cost | None]) -> str | None:
        cost = payload[1]
        return None if cost is None else objective.check_limits(cost.params, cost.flops)

    return identify, feasibility


def run_search(config: dict[str, Any], run_dir: str | Path, *, address: str | None = None,
               cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, max_concurrent: int | None = None,
               num_cpus: int | None = None, progress: Progress | None = None, download: bool = False,
               trainable: Callable[..., None] | None = None) -> SearchRun:
    """Run (or resume) a search with trials trained on Ray Tune; returns the finished run.

    ``download``: fetch CIFAR-10 / MNIST / Fashion-MNIST into ``data_root`` when missing.
    ``trainable``: replaces the default trial function (tests, benchmarks; see ``run_on_ray``).
    """
    from nas.datasets import load_dataset
    from nas.ray_backend import run_on_ray

    check_config(config)
    extra = {"download": True} if download and config["dataset"] in DOWNLOADABLE else {}
    data = load_dataset(config["dataset"], config["data_root"], **config["data_options"], **extra)
    space_options = {"input_shape": data.input_shape, "num_classes": data.num_classes, **config["space_options"]}
    space = make_space(config["space"], **space_options)
    objective = Objective.from_dict(config["objective"])

    identify, feasibility = trial_payload(space, objective)
    run = SearchRun(run_dir, config, space, build_strategy(config, space), config["trials"],
                    identify=identify, feasibility=feasibility)
    atomic_write_json(Path(run_dir) / SPACE_FILE, {"space": config["space"], "options": space_options})
    if run.finished:
        run.close()
        return run
    base = {"train": config["train"], "objective": config["objective"], "space": config["space"],
            "space_options": space_options}
    run_on_ray(run, base, data=data, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
               max_concurrent=max_concurrent, scheduler=config["scheduler"], max_epochs=config["train"]["epochs"],
               address=address, num_cpus=num_cpus, progress=progress, trainable=trainable)
    plot_progress(run, Path(run_dir) / "progress.png")
    return run


def run_benchmark(config: dict[str, Any], run_dir: str | Path) -> tuple[SearchRun, Any]:
    """NAS-Bench-201 table-lookup search under the benchmark's protocol (no Ray, no training)."""
    from nas.benchmarks.nb201 import NB201Table, run_protocol

    check_config(config)
    table = NB201Table(config["table"])
    space = make_space("nb201")
    run = SearchRun(run_dir, config, space, build_strategy(config, space), config["trials"],
                    identify=lambda arch: (space.to_string(arch), arch), dedup=False, durable=False,
                    snapshot_every=0)

    def ask() -> tuple[int, Any] | None:
        nxt = run.next_trial()
        return None if nxt is None else (nxt[0].trial, nxt[1])

    done = [space.from_json(r.arch) for r in sorted(run.records.values(), key=lambda r: r.trial) if r.done]
    try:
        result = run_protocol(ask, run.finish, table, time_budget=config["time_budget"], done=done)
    finally:
        run.close()
    return run, result
