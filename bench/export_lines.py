"""Lines of the exported model files: the reference networks at their published sizes, one member of each
search space, and the examples under models/.

Each architecture is exported with :func:`nas.export.generate_model_source` (no weights, no run header)
and its source lines are counted; the examples are counted as they lie in ``models/``. To compare two
versions of the exporter, run the script with each checkout first on the path::

    python bench/export_lines.py                       # this checkout
    PYTHONPATH=/path/to/other/checkout python bench/export_lines.py --models /path/to/other/checkout/models
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.export import generate_model_source
from search_spaces.ir import ArchGraph
from search_spaces.reference import create_model
from search_spaces.spaces.binary import BinarySpace
from search_spaces.spaces.darts import DARTS_V2, DartsSpace
from search_spaces.spaces.macro import MacroArch, MacroSpace, StageChoice
from search_spaces.spaces.nb201 import NB201Space, parse_arch_string

REFERENCE = ("vgg16", "googlenet", "resnet18", "resnet34", "resnet50", "preact_resnet50", "resnext50_32x4d",
             "densenet121", "highwaynet", "vit_tiny_patch16_224")
NB201_6111 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
MACRO = MacroArch((StageChoice("residual", 64, 3, 3, True), StageChoice("attention", 128, 2, 3, True),
                   StageChoice("dense", 128, 3, 3, False)))


def space_members() -> dict[str, ArchGraph]:
    """One member per search space at the space's default size."""
    return {"nb201 (6111)": NB201Space().to_graph(parse_arch_string(NB201_6111)),
            "darts (DARTS_V2, 20 cells)": DartsSpace().to_graph(DARTS_V2),
            "macro (residual/attention/dense)": MacroSpace().to_graph(MACRO),
            "binary (all bits set)": BinarySpace().to_graph((1,) * 31)}


def count(source: str) -> int:
    return len(source.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(Path(__file__).resolve().parents[1] / "models"),
                        help="directory of the example exports to count")
    args = parser.parse_args()
    print("| export | lines |\n|---|---|")
    for name in REFERENCE:
        print(f"| {name} | {count(generate_model_source(create_model(name)).source)} |")
    for name, graph in space_members().items():
        print(f"| {name} | {count(generate_model_source(graph).source)} |")
    for path in sorted(Path(args.models).glob("*.py")):
        if path.name != "__init__.py":
            print(f"| models/{path.name} | {count(path.read_text())} |")


if __name__ == "__main__":
    main()
