"""``nas export``: write an architecture as standalone PyTorch source (+ weights), ONNX, a torch.export
program or TorchScript.

The architecture comes from a run (a trial, or the best), a graph JSON file, a reference model, or
a NAS-Bench-201 index. Python export writes ``NAME.py`` (only torch imported; timm's model contract,
with the input normalisation in its ``PRETRAINED_CFG``) and, when weights are known,
``NAME.safetensors`` with the exported module's parameter names; ONNX, torch.export (``.pt2``) and
TorchScript are produced from the exported module itself and checked against it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from nas.export.codegen import GeneratedModel, generate_model_source
from nas.export.pretrained import Normalisation
from search_spaces.compiler import GraphModule
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph

FORMATS = ("python", "onnx", "pt2", "torchscript")
SUFFIXES = {"python": ".py", "onnx": ".onnx", "pt2": ".pt2", "torchscript": ".pt"}


def class_name_for(stem: str) -> str:
    """``digits_evolution_best`` -> ``DigitsEvolutionBest`` (a valid identifier)."""
    name = "".join(part.capitalize() for part in re.split(r"[^0-9a-zA-Z]+", stem) if part)
    return name if name and not name[0].isdigit() else f"Net{name}"


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def import_source(path: Path, module_name: str | None = None) -> ModuleType:
    """Import a generated file as a module (it only imports torch)."""
    name = module_name or f"_nas_export_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def exported_module(generated: GeneratedModel, compiled: GraphModule) -> nn.Module:
    """Instantiate the generated class (in a temp dir) with the compiled module's weights."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exported_model.py"
        path.write_text(generated.source)
        module = import_source(path)
    model = getattr(module, generated.class_name)()
    state = {generated.key_map[k]: v for k, v in compiled.state_dict().items()}
    model.load_state_dict(state, strict=True)
    return model


def check_equivalence(model: nn.Module, compiled: GraphModule, atol: float = 1e-6) -> float:
    """Max abs difference of eval-mode outputs on a random batch; raises if above ``atol``."""
    x = torch.randn(2, *compiled.input_shape, generator=torch.Generator().manual_seed(0))
    model.eval(), compiled.eval()
    with torch.no_grad():
        diff = (model(x) - compiled(x)).abs().max().item()
    if not diff <= atol:
        raise RuntimeError(f"exported module differs from the compiled graph by {diff:.3g} (> {atol})")
    return diff


def export(graph: ArchGraph, out: str | Path, fmt: str = "python", weights: dict[str, torch.Tensor] | None = None,
           header: dict[str, Any] | None = None, seed: int = 0,
           normalisation: Normalisation | None = None) -> list[Path]:
    """Export ``graph`` to ``out``; ``weights``: a state_dict of the compiled GraphModule or of an
    earlier export of the same graph (None: seed initialisation); ``normalisation``: the input the
    weights expect, written into the source's ``PRETRAINED_CFG`` (None: none, see
    :mod:`nas.export.pretrained`).

    Returns the written paths. Raises InputError for an unknown format or a bad output path.
    """
    from nas.export.weights import load_into, save_weights

    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    out = Path(out)
    suffix = SUFFIXES[fmt]
    if out.suffix != suffix:
        raise InputError(f"--out for format {fmt} must end in {suffix}, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    compiled = GraphModule(graph, seed=seed)
    name = class_name_for(out.stem)
    weights_file = out.with_suffix(".safetensors").name if weights is not None and fmt == "python" else None
    try:
        generated = generate_model_source(graph, name, header, normalisation, weights_file)
    except ValueError:  # the name clashes with a class the file defines (e.g. ResidualBlock)
        generated = generate_model_source(graph, f"{name}Model", header, normalisation, weights_file)
    if weights is not None:
        exported_keys = {v: k for k, v in generated.key_map.items()}
        if set(weights) != set(generated.key_map) and set(weights) == set(exported_keys):
            weights = {exported_keys[k]: v for k, v in weights.items()}  # weights of an earlier export
        load_into(compiled, weights)
    compiled.eval()
    model = exported_module(generated, compiled)
    check_equivalence(model, compiled)
    written = []
    if fmt == "python":
        write_text_atomic(out, generated.source)
        written.append(out)
        if weights is not None:
            weights_path = out.with_suffix(".safetensors")
            save_weights(model.state_dict(), weights_path, arch_hash=compiled.arch_hash,
                         extra={"class_name": generated.class_name})
            written.append(weights_path)
    elif fmt == "onnx":
        from nas.export.formats import check_onnx, export_onnx

        export_onnx(model, compiled.input_shape, out)
        check_onnx(out, compiled, compiled.input_shape)
        written.append(out)
    elif fmt == "pt2":
        from nas.export.formats import export_pt2

        export_pt2(model, compiled.input_shape, out)
        written.append(out)
    else:
        from nas.export.formats import export_torchscript

        export_torchscript(model, compiled.input_shape, out)
        written.append(out)
    return written
