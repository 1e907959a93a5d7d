"""The example exports under models/, and their regeneration.

``models/manifest.json`` lists each example: its architecture graph (``NAME.graph.json``), the
header written into ``NAME.py``, the input normalisation written into its ``PRETRAINED_CFG`` and
whether ``NAME.safetensors`` holds weights. Regenerating an example from those inputs must give
byte-identical files (tests/nas/test_models_examples.py).

    python -m nas.export.examples --run runs/evolution-macro-digits-seed0   # rewrite the examples
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from nas.export.exporter import export, write_text_atomic
from nas.export.pretrained import Normalisation, nb201_cifar10, of_run_data
from nas.export.weights import load_weights
from nas.journal import atomic_write_json
from nas.rundir import RunView
from search_spaces.compiler import GraphModule
from search_spaces.ir import ArchGraph
from search_spaces.spaces.nb201 import NB201Space, arch_from_index

MANIFEST = "manifest.json"
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def add_example(models_dir: Path, name: str, graph: ArchGraph, weights: dict[str, torch.Tensor] | None,
                header: dict[str, Any], normalisation: Normalisation | None = None) -> list[Path]:
    """Export ``graph`` as ``models_dir/NAME.py`` (+ weights) and record it in the manifest."""
    models_dir.mkdir(parents=True, exist_ok=True)
    header = dict(sorted(header.items()))  # the manifest stores keys sorted: regenerate in that order
    graph_path = models_dir / f"{name}.graph.json"
    write_text_atomic(graph_path, graph.to_json(indent=1) + "\n")
    written = export(graph, models_dir / f"{name}.py", "python", weights, header, normalisation=normalisation)
    manifest_path = models_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[name] = {"graph": graph_path.name, "header": header, "weights": weights is not None,
                      "normalisation": None if normalisation is None else normalisation.to_dict()}
    atomic_write_json(manifest_path, manifest)
    return [graph_path, *written]


def regenerate(models_dir: Path, out_dir: Path) -> list[Path]:
    """Re-export every example listed in ``models_dir``'s manifest into ``out_dir``."""
    manifest = json.loads((models_dir / MANIFEST).read_text())
    written = []
    for name, entry in sorted(manifest.items()):
        graph = ArchGraph.from_json((models_dir / entry["graph"]).read_text())
        weights = (load_weights(models_dir / f"{name}.safetensors", arch_hash=graph.canonical_hash())
                   if entry["weights"] else None)
        norm = entry.get("normalisation")
        written += export(graph, out_dir / f"{name}.py", "python", weights, entry["header"],
                          normalisation=None if norm is None else Normalisation.from_dict(norm))
    return written


def main() -> None:
    """Rewrite models/ from a finished digits evolution run and NAS-Bench-201 index 6111."""
    parser = argparse.ArgumentParser(description="rewrite the example exports in models/")
    parser.add_argument("--run", required=True, help="a finished `nas search --strategy evolution` run on digits")
    parser.add_argument("--table", default=str(MODELS_DIR.parents[1] / "shared/benchmarks/nb201/nb201_cifar10.csv"))
    args = parser.parse_args()
    run = RunView(args.run)
    best = run.leaderboard(1)[0]
    graph = run.graph(best.trial)
    weights_path = run.weights(best.trial)
    if weights_path is None:
        raise SystemExit(f"trial {best.trial} of {args.run} saved no weights")
    weights = load_weights(weights_path, arch_hash=graph.canonical_hash())
    header = {"run": str(args.run), "command": "nas search --strategy evolution", "trial": best.trial,
              "val_acc": best.metrics.get("val_acc"), "params": best.metrics.get("params")}
    normalisation = of_run_data(run.data_settings(), graph.validate()[graph.input].channels)
    for path in add_example(MODELS_DIR, "digits_evolution_best", graph, weights, header, normalisation):
        print(f"wrote {path}")
    space = NB201Space()
    arch = arch_from_index(args.table, 6111)
    nb201 = space.to_graph(arch)
    GraphModule(nb201)  # validates
    header = {"nb201_index": 6111, "arch": space.to_string(arch),
              "weights": "none (seed-0 initialisation); NAS-Bench-201 reports 94.37% CIFAR-10 test accuracy"}
    for path in add_example(MODELS_DIR, "nb201_best_6111", nb201, None, header, nb201_cifar10(3)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
