"""The ``nas`` command line.

Commands: ``search`` (run or resume a search), ``show RUN`` (leaderboard and history of a run),
``repair RUN`` (set a damaged journal's bad lines aside, with a backup),
``export`` (standalone PyTorch source + weights, ONNX, TorchScript), ``train`` (retrain an
architecture from scratch, resumable), ``spaces`` (list spaces and reference models),
``space NAME`` (show a space and build sampled members), ``model NAME`` (build a reference
network), ``graph FILE`` (validate a JSON architecture graph). Bad input prints one line
``nas: error: ...`` on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas import __version__
from nas.callbacks import LOGGERS, logger_callbacks
from nas.config import Execution, SearchConfig, load_config_file, merge, resolve_config
from nas.datasets import load_dataset
from nas.evaluators import DOWNLOADABLE
from nas.experiment import Experiment
from nas.export.command import add_parser as add_export_parser
from nas.front import PARETO_PNG, front_rows, plot_front
from nas.journal import repair_journal
from nas.precision import resolve_precision
from nas.progress import format_table, history_rows, leaderboard_rows, plot_progress
from nas.ray_backend import SearchInterrupted
from nas.retrain import load_graph_file, retrain, summary, trial_graph
from nas.rundir import PROGRESS_PNG, RunLock, RunView, read_config
from nas.trainer import TrainConfig, TrialFailed, device_for
from search_spaces.analysis import measure
from search_spaces.compiler import GraphModule
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.reference import create_model, list_models
from search_spaces.spaces import SPACES, make_space
from search_spaces.spaces.nb201 import NB201Space

EXIT_BAD_INPUT = 2


class UsageError(InputError):
    """Bad user input: reported as one line on stderr, exit code 2."""


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints like 3,32,32, got {text!r}") from None
    if len(dims) not in (1, 2, 3) or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected 1 to 3 positive ints like 3,32,32, got {text!r}")
    return dims


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _summary(arch: Any, seed: int = 0, run_forward: bool = True) -> dict[str, Any]:
    """Hash, params, FLOPs and (optionally) the output shape of a real forward pass of batch 2."""
    cost = measure(arch)
    info: dict[str, Any] = {"hash": arch.canonical_hash()[:16], "nodes": len(arch), "params": cost.params,
                            "mflops": round(cost.flops / 1e6, 3)}
    if run_forward:
        module = GraphModule(arch, seed=seed).eval()
        with torch.no_grad():
            out = module(torch.randn(2, *module.input_shape))
        info["output"] = list(out.shape)
    return info


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for row in rows:
        print("  ".join(str(row[k]).ljust(widths[k]) for k in keys))


def cmd_spaces(args: argparse.Namespace) -> int:
    print("search spaces:   " + ", ".join(sorted(SPACES)))
    print("reference models: " + ", ".join(list_models()))
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = {"num_classes": args.num_classes}
    if args.input_shape is not None:
        kwargs["input_shape"] = args.input_shape
    space = make_space(args.name, **kwargs)
    print(f"space {space.name}: {len(space.variables)} variables, {space.size:,} members")
    for var in space.variables:
        kind = "ordinal" if var.ordinal else "categorical"
        print(f"  {var.name:<24} {kind:<11} {list(var.choices)}")
    rng = np.random.default_rng(args.seed)
    rows = []
    for i in range(args.samples):
        arch = space.sample(rng)
        graph = space.to_graph(arch)
        rows.append({"sample": i, **_summary(graph, args.seed), "arch": str(arch)})
        if args.json_out is not None:
            _write_json(Path(args.json_out) / f"{space.name}-sample{i}.json", graph.to_dict())
    print()
    _print_table(rows)
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if args.img_size is not None:
        kwargs["img_size"] = args.img_size
    graph = create_model(args.name, **kwargs)
    info = _summary(graph, run_forward=args.forward)
    _print_table([{"model": args.name, **info}])
    if args.json_out is not None:
        _write_json(Path(args.json_out), graph.to_dict())
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"graph file {path} does not exist; pass a JSON file written by this tool")
    graph = ArchGraph.from_json(path.read_text())
    _print_table([{"graph": graph.name or path.name, **_summary(graph)}])
    return 0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    print(f"wrote {path}")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


STRATEGY_FLAGS = ("population_size", "sample_size", "initial_mutations", "rounds_per_step", "order", "init_channels",
                  "layers", "arch_lr", "arch_weight_decay", "train_portion", "augment", "early_stop", "hessian_every",
                  "num_workers", "latency_weight")
TRAIN_FLAGS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "precision", "compile")
DATA_FLAGS = ("dataset", "data_root", "val_fraction", "data_limit")  # data_limit: the data's "limit"
OBJECTIVE_FLAGS = ("metric", "max_params", "max_mflops", "max_latency_ms", "params_penalty", "flops_penalty",
                   "latency_penalty", "objectives")


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (flags left out are absent: defaults are resolved once,
    by :func:`nas.config.resolve_config`), in the layout of a config file."""

    def given(names: Any, rename: dict[str, str] | None = None) -> dict[str, Any]:
        rename = rename or {}
        return {rename.get(n, n): getattr(args, n) for n in names if getattr(args, n) is not None}

    out: dict[str, Any] = given(("strategy", "space", "trials", "seed", "scheduler", "benchmark", "time_budget"))
    if args.table is not None:
        out["table"] = args.table
    options = given(STRATEGY_FLAGS)
    if args.tournament_replacement:
        options["tournament_replacement"] = True
    if args.aux_skip:
        options["aux_skip"] = True
    for key, value in (("strategy_options", options), ("train", given(TRAIN_FLAGS)),
                       ("data", given(DATA_FLAGS, {"data_limit": "limit"})), ("objective", given(OBJECTIVE_FLAGS))):
        if value:
            out[key] = value
    return out


def search_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``--config FILE`` (if any), overridden by the flags given."""
    settings = given_settings(args)
    return settings if args.config is None else merge(load_config_file(args.config), settings)


def search_config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The run's resolved configuration from the command line."""
    return resolve_config(search_settings(args))


def cmd_search(args: argparse.Namespace) -> int:
    settings = search_settings(args)
    config = resolve_config(settings)
    execution = Execution(address=args.address, cpus_per_trial=args.cpus_per_trial,
                          gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
                          download=args.download, max_retries=args.max_retries, trial_timeout=args.trial_timeout,
                          storage=args.storage)
    exp = Experiment.from_config(config, args.run_dir, execution=execution, trials_explicit="trials" in settings,
                                 callbacks=logger_callbacks(args.logger), quiet=args.quiet)
    run_dir = exp.run_dir
    result = exp.run(log=(lambda line: None) if args.quiet else print)
    if result.protocol is not None:
        protocol = result.protocol
        print(f"NAS-Bench-201 protocol, {config.strategy}, seed {config.seed}: {protocol.queries} queries, "
              f"{protocol.seconds:,.0f} of {config.time_budget:,.0f} simulated seconds")
        print(f"  returned {NB201Space().to_string(protocol.best_arch)}")
        print(f"  12-epoch valid acc {protocol.best_valid_12ep:.2f}, 200-epoch test acc {protocol.test_acc:.2f}")
    view = RunView(run_dir)
    if view.multi:
        print(f"\nPareto front ({len(view.pareto_front())} of {view.num_done} trials; pick one with `nas export "
              f"{run_dir} --pareto-pick ...`):")
        print(format_table(front_rows(view)))
    elif result.protocol is None:
        print()
        print(format_table(leaderboard_rows(view)))
    print(f"\nrun directory: {run_dir} (rerun the same command to resume; `nas show {run_dir}`)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = RunView(args.run)
    print(f"run {args.run}: {run.num_done}/{run.max_trials} trials done, {run.num_failed} failed, "
          f"{len(run.pending)} pending")
    if args.pareto or run.multi:
        print(f"\nPareto front of {', '.join(str(c) for c in run.criteria) or 'one objective'}:")
        print(format_table(front_rows(run)))  # a single-objective run: one clear error
    else:
        print("\nleaderboard:")
        print(format_table(leaderboard_rows(run, args.top)))
    if args.history:
        print("\nhistory:")
        print(format_table(history_rows(run)))
    if run.num_done:
        plots = [(plot_progress, PROGRESS_PNG)] + ([(plot_front, PARETO_PNG)] if run.multi else [])
        for plot, name in plots:
            try:
                print(f"\nplot: {plot(run, Path(args.run) / name)}")
            except OSError as err:  # a read-only run directory (an archived run, another user's run)
                print(f"\nplot: not written ({Path(args.run) / name}: {err.strerror or err})")
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    """Set a run journal's damaged lines aside (backed up first) so the run can resume."""
    read_config(args.run)  # a run directory, or one clear error
    lock = RunLock(args.run).acquire()  # never under a live search
    try:
        report = repair_journal(args.run)
    finally:
        lock.release()
    print(f"{args.run}: {report.describe()}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Retrain a graph file's or a run trial's architecture from scratch (rerun to resume)."""
    if (args.graph is None) == (args.run is None):
        raise UsageError("pass exactly one of --graph FILE.json or --run RUN")
    if args.graph is not None and (args.trial is not None or args.best):
        raise UsageError("--trial and --best pick a trial of --run RUN; they do not apply to --graph")
    if args.trial is not None and args.best:
        raise UsageError("pass --trial ID or --best, not both")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                         weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed,
                         precision=args.precision, compile=args.compile).validate()
    device = device_for(args.gpus)
    resolve_precision(config.precision, device)  # fp16 without a GPU: refused before anything is written
    view = record = graph = None
    run_data: dict[str, Any] = {}
    if args.graph is not None:
        graph = load_graph_file(args.graph)
    else:
        view = RunView(args.run)
        record = view.pick(args.trial)
        run_data = view.data_settings() or {}
    dataset = args.dataset or run_data.get("dataset") or ("digits" if args.graph is not None else None)
    if dataset is None:
        raise UsageError(f"run {args.run} has no built-in dataset (a table-lookup run, or one with its own "
                         "evaluator); pass --dataset")
    same = dataset == run_data.get("dataset")
    data_root = args.data_root or (run_data.get("data_root") if same else None)
    val_fraction = args.val_fraction
    if val_fraction is None:
        val_fraction = run_data.get("val_fraction") or 0.2
    data_options = {"val_fraction": val_fraction, "limit": args.data_limit}
    extra = {"download": True} if args.download and dataset in DOWNLOADABLE else {}
    data = load_dataset(dataset, data_root, **data_options, **extra, compact=True)  # normalised on the device
    if view is not None and record is not None:
        graph = trial_graph(view, record, data, same_data=same)
        print(f"run {args.run}, trial {record.trial} (score {record.score:.4f}): {graph.name}")
    assert graph is not None
    data_info = {"dataset": dataset, "data_root": str(Path(data_root).resolve()) if data_root else None,
                 "data_options": data_options}
    print(f"training on {data.name} ({len(data.train_x)} train / {len(data.val_x)} val samples) on {device}, "
          f"{config.epochs} epochs, augment {args.augment}; checkpoints in {args.out}")
    try:
        final = retrain(graph, data, args.out, config, augment=args.augment, device=device, data_info=data_info,
                        log=print)
    except TrialFailed as err:
        raise UsageError(f"training failed: {err.reason}") from None
    print(summary(final, graph, args.out))
    return 0


def _add_speed_flags(group: Any, search: bool) -> None:
    """--precision and --compile. For a search they default to None (left out of the given settings:
    defaults are resolved once, by nas.config); for `nas train` to TrainConfig's defaults."""
    group.add_argument("--precision", default=None if search else "auto",
                       help="auto (default: bf16 on GPUs that have it, fp32 on CPU) | bf16 | fp16 (GPU) | fp32")
    group.add_argument("--compile", action="store_true", default=None if search else False,
                       help="run the network through torch.compile (pays off only for long trainings)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas", description="Neural architecture search on graph search spaces.")
    parser.add_argument("--version", action="version", version=f"nas {__version__} (distribution graphnas)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("search", help="run a search (rerun the same command to resume it)")
    g = p.add_argument_group("search")
    g.add_argument("--config", default=None, help="settings file (TOML, YAML or JSON; a run's config.json works); "
                                                   "flags given override it")
    g.add_argument("--strategy", default=None,
                   help="evolution (default) | evolution-annealed | random | tpe | nsga2 | combo | darts")
    g.add_argument("--space", default=None,
                   help="search space: macro | nb201 | darts | binary (default: macro; darts for --strategy darts; "
                        "nb201 in benchmark mode)")
    g.add_argument("--trials", type=_positive, default=None,
                   help="trial budget (default 20; with --strategy darts: the number of searches, default 4)")
    g.add_argument("--seed", type=int, default=None, help="default 0")
    g.add_argument("--run-dir", default=None, help="default: runs/<strategy>-<space>-<data>-seed<seed>")
    g.add_argument("--population-size", type=_positive, default=None)
    g.add_argument("--sample-size", type=_positive, default=None)
    g.add_argument("--tournament-replacement", action="store_true")
    g.add_argument("--initial-mutations", type=_positive, default=None, help="evolution-annealed: d")
    g.add_argument("--rounds-per-step", type=_positive, default=None, help="evolution-annealed: r")
    g = p.add_argument_group("data and training")
    g.add_argument("--dataset", default=None, help="digits (default) | cifar10 | mnist | fashion_mnist | folder")
    g.add_argument("--data-root", default=None, help="directory holding the dataset files")
    g.add_argument("--download", action="store_true", help="download cifar10 / mnist / fashion_mnist if missing")
    g.add_argument("--data-limit", type=_positive, default=None, help="use at most this many training samples")
    g.add_argument("--val-fraction", type=_fraction, default=None, help="default 0.2")
    g.add_argument("--epochs", type=_positive, default=None, help="default 3 (DARTS: 50 search epochs)")
    g.add_argument("--batch-size", type=_positive, default=None, help="default 64")
    g.add_argument("--optimizer", default=None, choices=["sgd", "adam", "adamw"], help="default sgd")
    g.add_argument("--lr", type=_fraction, default=None, help="default 0.05 (DARTS: 0.025, cosine to 0.001)")
    g.add_argument("--weight-decay", type=_fraction, default=None, help="default 5e-4 (DARTS: 3e-4)")
    _add_speed_flags(g, search=True)
    g = p.add_argument_group("DARTS (--strategy darts; defaults: the paper's)")
    g.add_argument("--order", type=int, choices=[1, 2], default=None, help="1: first order (default), 2: second")
    g.add_argument("--init-channels", type=_positive, default=None, help="search network channels (16)")
    g.add_argument("--layers", type=_positive, default=None, help="search network cells (8)")
    g.add_argument("--arch-lr", type=_fraction, default=None, help="Adam learning rate of the alphas (3e-4)")
    g.add_argument("--arch-weight-decay", type=_fraction, default=None, help="(1e-3)")
    g.add_argument("--train-portion", type=_fraction, default=None, help="weights' share of the train set (0.5)")
    g.add_argument("--augment", default=None, choices=["crop-flip", "crop", "none"], help="(crop-flip)")
    g.add_argument("--aux-skip", action="store_true", help="DARTS-: auxiliary skip decayed 1 -> 0")
    g.add_argument("--early-stop", default=None, choices=["none", "hessian", "skips"],
                   help="hessian: DARTS-ES (dominant eigenvalue); skips: DARTS+ (2 skip connections)")
    g.add_argument("--hessian-every", type=int, default=None, help="log the Hessian eigenvalue every N epochs")
    g.add_argument("--num-workers", type=_positive, default=None,
                   help="run each search data-parallel on N Ray Train workers (each with --cpus-per-trial / "
                        "--gpus-per-trial; --batch-size is the global batch); same results as 1 worker (default)")
    g.add_argument("--latency-weight", type=_fraction, default=None,
                   help="a differentiable latency term: the mixed ops' expected latency on the search's device, "
                        "relative to the initial supernet's, times this weight, added to the architecture loss "
                        "(0: off, the default; e.g. 0.1)")
    g = p.add_argument_group("objective")
    g.add_argument("--metric", default=None, help="the metric to maximise: val_acc (default), best_val_acc")
    g.add_argument("--max-params", type=_positive, default=None)
    g.add_argument("--max-mflops", type=_fraction, default=None)
    g.add_argument("--max-latency-ms", type=_fraction, default=None)
    g.add_argument("--params-penalty", type=_fraction, default=None, help="per million parameters")
    g.add_argument("--flops-penalty", type=_fraction, default=None, help="per GFLOP")
    g.add_argument("--latency-penalty", type=_fraction, default=None, help="per millisecond")
    g.add_argument("--objectives", default=None,
                   help="a multi-objective search: comma-separated metrics, e.g. val_acc,latency_ms (accuracies "
                        "maximised; latency, params, flops, losses minimised; NAME:max / NAME:min to say); params, "
                        "flops and latency_ms (on the trial's device) are measured for every trial; in benchmark "
                        "mode the table's columns, e.g. valid_acc_12ep,latency_pixel3_ms")
    g = p.add_argument_group("execution (Ray Tune)")
    g.add_argument("--address", default=None, help="join this Ray cluster ('auto' or host:port); default: local")
    g.add_argument("--cpus-per-trial", type=_fraction, default=1.0, help="(per worker with --num-workers)")
    g.add_argument("--gpus-per-trial", type=_fraction, default=0.0,
                   help="fractions allowed, e.g. 0.5 (per worker with --num-workers, whole GPUs)")
    g.add_argument("--max-concurrent", type=_positive, default=None)
    g.add_argument("--storage", default=None,
                   help="where trials' checkpoints (weights) go: a path every node sees (NFS) or a cloud URI "
                        "(s3://bucket/prefix, gs://...); default RUN/tune, right for one machine")
    g.add_argument("--max-retries", type=int, default=2,
                   help="run a trial again when its worker or node dies, up to N times (default 2)")
    g.add_argument("--trial-timeout", type=_fraction, default=None,
                   help="end a trial still running after this many seconds and record it as failed")
    g.add_argument("--scheduler", default=None, choices=["fifo", "asha"], help="asha: early stopping")
    g.add_argument("--logger", action="append", default=[], choices=sorted(LOGGERS),
                   help="also log trials with this Ray Tune logger (repeatable); Tune itself writes progress.csv "
                        "and result.json per trial, and TensorBoard files when tensorboardX is installed")
    g.add_argument("--quiet", action="store_true", help="no progress line")
    g = p.add_argument_group("benchmark mode (table lookup, no Ray)")
    g.add_argument("--benchmark", default=None, help="nb201")
    g.add_argument("--table", default=None, help="NAS-Bench-201 CSV")
    g.add_argument("--time-budget", type=_fraction, default=None, help="simulated seconds (default 12000)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("show", help="leaderboard, history and plot of a run directory")
    p.add_argument("run")
    p.add_argument("--top", type=_positive, default=10)
    p.add_argument("--history", action="store_true", help="also list every trial")
    p.add_argument("--pareto", action="store_true",
                   help="the Pareto front of a multi-objective run (shown for one by default) and pareto.png")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("repair", help="set a run journal's damaged lines aside (with a backup) so it resumes")
    p.add_argument("run")
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("spaces", help="list search spaces and reference models")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("space", help="show a search space and build sampled members")
    p.add_argument("name", help="space name (see `nas spaces`)")
    p.add_argument("--samples", type=_positive, default=3, help="members to sample and build (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-shape", type=_shape, default=None, help="e.g. 3,32,32 (default: the space's)")
    p.add_argument("--num-classes", type=_positive, default=10)
    p.add_argument("--json-out", default=None, help="directory to write the sampled graphs as JSON")
    p.set_defaults(func=cmd_space)

    p = sub.add_parser("model", help="build a reference network through the IR and summarise it")
    p.add_argument("name", help="model name (see `nas spaces`)")
    p.add_argument("--num-classes", type=_positive, default=None)
    p.add_argument("--img-size", type=_positive, default=None)
    p.add_argument("--no-forward", dest="forward", action="store_false", help="skip the real forward pass")
    p.add_argument("--json-out", default=None, help="write the graph as JSON to this file")
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("graph", help="validate and summarise an architecture graph JSON file")
    p.add_argument("file")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("train", help="retrain an architecture from scratch (rerun the same command to resume)")
    g = p.add_argument_group("architecture (one of)")
    g.add_argument("--graph", default=None, help="ArchGraph JSON file (nas model/space --json-out)")
    g.add_argument("--run", default=None, help="search run directory: its best trial, or --trial ID")
    g.add_argument("--trial", type=int, default=None, help="trial id of --run (see `nas show RUN --history`)")
    g.add_argument("--best", action="store_true", help="the run's best successful trial (the default)")
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, help="directory for checkpoints, weights, metrics and graph")
    g = p.add_argument_group("data (default with --run: the run's dataset, data root and validation fraction)")
    g.add_argument("--dataset", default=None, help="digits | cifar10 | mnist | fashion_mnist | folder")
    g.add_argument("--data-root", default=None, help="directory holding the dataset files")
    g.add_argument("--download", action="store_true", help="download cifar10 / mnist / fashion_mnist if missing")
    g.add_argument("--data-limit", type=_positive, default=None, help="use at most this many training samples")
    g.add_argument("--val-fraction", type=_fraction, default=None, help="default 0.2 (or the run's)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=_positive, default=30)
    g.add_argument("--batch-size", type=_positive, default=128)
    g.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    g.add_argument("--lr", type=_fraction, default=0.1)
    g.add_argument("--weight-decay", type=_fraction, default=5e-4)
    g.add_argument("--schedule", default="cosine", choices=["cosine", "constant", "step"])
    g.add_argument("--augment", default="crop-flip", choices=["crop-flip", "crop", "none"],
                   help="random crop (+ horizontal flip); crop-flip by default")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--gpus", type=_fraction, default=0.0, help="> 0: train on the GPU when there is one")
    _add_speed_flags(g, search=False)
    p.set_defaults(func=cmd_train)

    add_export_parser(sub, _positive)
    return parser


def _terminate(signum: int, frame: Any) -> None:
    raise SearchInterrupted(signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)  # SLURM / Kubernetes stop: the same graceful path as Ctrl-C
    try:
        return int(args.func(args))
    except InputError as err:  # the project's own bad-input errors; anything else is a bug: its traceback shows
        print(f"nas: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as err:  # the journal is settled: rerunning the command resumes
        print("nas: interrupted", file=sys.stderr)
        return 128 + getattr(err, "signum", signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
