"""The ``nas`` command line.

Commands: ``spaces`` (list spaces and reference models), ``space NAME`` (show a space and build
sampled members), ``model NAME`` (build a reference network), ``graph FILE`` (validate a JSON
architecture graph). Bad input prints one line ``nas: error: ...`` on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2


class UsageError(Exception):
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
    import torch

    from search_spaces.analysis import measure
    from search_spaces.compiler import GraphModule

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
    from search_spaces.reference import list_models
    from search_spaces.spaces import SPACES

    print("search spaces:   " + ", ".join(sorted(SPACES)))
    print("reference models: " + ", ".join(list_models()))
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    import numpy as np

    from search_spaces.spaces import make_space

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
    from search_spaces.reference import create_model

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
    from search_spaces.ir import ArchGraph

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas", description="Neural architecture search on graph search spaces.")
    sub = parser.add_subparsers(dest="command", required=True)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from search_spaces.errors import ArchGraphError

    try:
        return int(args.func(args))
    except (UsageError, ArchGraphError, ValueError) as err:
        print(f"nas: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
