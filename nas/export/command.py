"""The ``nas export`` subcommand: pick the architecture (and weights), then :func:`nas.export.exporter.export`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from nas.export.exporter import export
from nas.export.pretrained import for_export
from nas.export.weights import load_weights
from nas.front import pick
from nas.rundir import RunView
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.reference import create_model
from search_spaces.spaces.nb201 import NB201Space, arch_from_index


def add_parser(sub: Any, positive: Any) -> None:
    p = sub.add_parser("export", help="write an architecture as standalone PyTorch source (+ weights), ONNX, a "
                                      "torch.export program or TorchScript")
    p.add_argument("run", nargs="?", default=None, help="run directory (with --trial ID or --best)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, default=None, help="trial id in the run")
    which.add_argument("--best", action="store_true", help="the run's best trial (default for a run)")
    which.add_argument("--pareto-pick", default=None, metavar="SPEC",
                       help="a member of a multi-objective run's Pareto front: its index in `nas show RUN --pareto`, "
                            "or conditions like 'latency_ms<5' or 'latency_pixel3_ms<=4,params<1e6' (the best by the "
                            "first objective of the members that meet them)")
    p.add_argument("--graph", default=None, help="architecture graph JSON file instead of a run")
    p.add_argument("--weights", default=None, help="safetensors weights for --graph (a compiled module's)")
    p.add_argument("--model", default=None, help="a reference network by name (see `nas spaces`)")
    p.add_argument("--num-classes", type=positive, default=None, help="with --model")
    p.add_argument("--img-size", type=positive, default=None, help="with --model")
    p.add_argument("--nb201-index", type=int, default=None, help="a NAS-Bench-201 cell in its macro skeleton")
    p.add_argument("--table", default=None, help="NAS-Bench-201 CSV (with --nb201-index)")
    p.add_argument("--out", required=True, help="output file: NAME.py, NAME.onnx, NAME.pt2 or NAME.pt")
    p.add_argument("--format", default="python", choices=["python", "onnx", "pt2", "torchscript"],
                   help="pt2: torch.export (dynamic batch); torchscript is deprecated in torch, prefer pt2")
    p.add_argument("--seed", type=int, default=0, help="initialisation when there are no weights")
    p.add_argument("--allow-untrained", action="store_true",
                   help="export a run's trial that has no trained weights, with seed initialisation")
    p.set_defaults(func=cmd_export)


def _architecture(args: argparse.Namespace) -> tuple[ArchGraph, dict[str, torch.Tensor] | None, dict[str, Any]]:
    """The graph, its weights (compiled-module keys) or None, and the header for the exported file."""
    sources = [args.run is not None, args.graph is not None, args.model is not None, args.nb201_index is not None]
    if sum(sources) != 1:
        raise InputError("name exactly one architecture: a RUN directory, --graph FILE, --model NAME or "
                         "--nb201-index I")
    if args.pareto_pick is not None and args.run is None:
        raise InputError("--pareto-pick picks from a run's Pareto front: pass the RUN directory")
    if args.run is not None:
        run = RunView(args.run)
        if args.pareto_pick is not None:
            record = pick(run, args.pareto_pick)
        elif args.trial is None:
            best = run.top()
            if best is None:
                raise InputError(f"run {args.run} has no successful trial to export")
            record = best
        else:
            record = run.records.get(args.trial)
            if record is None or not record.done:
                raise InputError(f"run {args.run} has no finished trial {args.trial}")
        graph = run.graph(record.trial)
        path = run.weights(record.trial)
        weights = None if path is None else load_weights(path, arch_hash=graph.canonical_hash())
        header = {"run": str(Path(args.run)), "trial": record.trial, "score": record.score,
                  **{k: record.metrics[k] for k in ("val_acc", "best_val_acc", "params", "flops")
                     if k in record.metrics},
                  **({c.name: v for c, v in zip(run.criteria, record.values, strict=True)}
                     if record.values is not None else {})}
        if weights is None:
            if not args.allow_untrained:
                why = record.metrics.get("weights_error") or (
                    "the run is a table-lookup benchmark: nothing was trained" if run.is_benchmark
                    else "a one-shot search derived it: this network was never trained on its own"
                    if record.metrics.get("derived")
                    else "the trial saved none, or its weights file is not under this run directory")
                raise InputError(f"trial {record.trial} of run {args.run} has no trained weights ({why}); pass "
                                 "--allow-untrained to export it with seed initialisation, or retrain it with "
                                 f"`nas train --run {args.run} --trial {record.trial}`")
            header["weights"] = "none saved by the trial: seed initialisation"
        return graph, weights, header
    if args.graph is not None:
        path = Path(args.graph)
        if not path.is_file():
            raise InputError(f"graph file {path} does not exist")
        graph = ArchGraph.from_json(path.read_text())
        weights = None if args.weights is None else load_weights(Path(args.weights), arch_hash=graph.canonical_hash())
        return graph, weights, {"graph": str(path)}
    if args.model is not None:
        kwargs = {k: v for k, v in (("num_classes", args.num_classes), ("img_size", args.img_size)) if v is not None}
        return create_model(args.model, **kwargs), None, {"model": args.model, **kwargs}
    if not args.table:
        raise InputError("--nb201-index needs --table PATH (the NAS-Bench-201 CSV)")
    try:
        arch = arch_from_index(args.table, args.nb201_index)
    except (OSError, IndexError) as err:
        raise InputError(str(err)) from None
    space = NB201Space()
    return space.to_graph(arch), None, {"nb201_index": args.nb201_index, "arch": space.to_string(arch)}


def cmd_export(args: argparse.Namespace) -> int:
    graph, weights, header = _architecture(args)
    normalisation = for_export(graph, args.run, args.model, args.nb201_index is not None)
    for path in export(graph, args.out, args.format, weights, header, seed=args.seed, normalisation=normalisation):
        print(f"wrote {path}")
    return 0
