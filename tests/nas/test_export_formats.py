"""ONNX (checked with onnxruntime), torch.export and TorchScript exports of compiled graphs (nas.export.formats).

Tiny members of the macro space, one per block kind that needs its own ops: convs, a residual
stage (sum merge), attention (mhsa over the map's positions) and highway gates.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from nas.export.formats import (
    ExportError,
    MissingDependencyError,
    check_onnx,
    export_onnx,
    export_pt2,
    export_torchscript,
    require_onnx,
)
from search_spaces.compiler import GraphModule
from search_spaces.spaces.macro import MacroArch, MacroSpace, StageChoice

SHAPE = (3, 8, 8)
BLOCKS = ("conv", "residual", "attention", "highway")


def macro_module(block: str) -> GraphModule:
    """Stem -> a skip-connected stage of ``block`` -> a reduced second stage -> classifier, trained-like
    BatchNorm statistics (so eval mode differs from train mode)."""
    space = MacroSpace(input_shape=SHAPE, num_classes=5, num_stages=2, widths=(8,), depths=(1,), kernels=(3,),
                       stem_width=4, blocks=(block,))
    module = GraphModule(space.to_graph(MacroArch((StageChoice(block, 8, 1, 3, True),
                                                   StageChoice(block, 8, 1, 3, False)))), seed=0)
    with torch.no_grad():
        module.train()(torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(0)))
    return module.train()  # the exports must switch to eval mode themselves and restore this


def only_file(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


class BatchTwoOnly(nn.Module):
    """Python control flow on the batch size: a trace taken at batch 2 bakes in one branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.shape[0] == 2 else x - 1


# ----------------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("block", BLOCKS)
def test_onnx_export_matches_onnxruntime(tmp_path: Path, block: str) -> None:
    onnx, ort = require_onnx()
    module = macro_module(block)
    path = export_onnx(module, SHAPE, tmp_path / f"{block}.onnx")
    assert module.training, "export must restore the module's mode"
    assert only_file(tmp_path) == [f"{block}.onnx"]  # one self-contained file, no temporaries
    assert check_onnx(path, module, SHAPE) <= 1e-5
    assert module.training

    model = onnx.load(str(path))
    inputs = model.graph.input
    assert [i.name for i in inputs] == ["x"]
    batch = inputs[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # a dynamic batch dimension
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(1, *SHAPE)
    with torch.no_grad():
        want = module.eval()(x)
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_check_onnx_raises_on_a_mismatch(tmp_path: Path) -> None:
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                           nn.Linear(4 * 8 * 8, 3))
    path = export_onnx(module, SHAPE, tmp_path / "seq.onnx", opset=18)
    check_onnx(path, module, SHAPE)
    with torch.no_grad():
        module[4].bias.add_(0.1)  # the module changes after the export
    with pytest.raises(ExportError, match="differs from the module's: max abs difference"):
        check_onnx(path, module, SHAPE)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ExportError, match="not a valid ONNX model"):
        check_onnx(tmp_path / "junk.onnx", module, SHAPE)


def test_onnx_falls_back_to_a_fixed_batch_when_the_batch_cannot_stay_dynamic(tmp_path: Path) -> None:
    module = BatchTwoOnly()
    with pytest.warns(RuntimeWarning, match="dynamic batch failed.*batch size 1"):
        path = export_onnx(module, (4,), tmp_path / "fixed.onnx")
    check_onnx(path, module, (4,))  # checked at the fixed batch size 1
    assert only_file(tmp_path) == ["fixed.onnx"]


def test_missing_onnx_packages_say_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("onnxruntime", "onnxscript"):
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError
            hint = rf"'{name}' is not installed.*pip install 'graphnas\[onnx\]'"
            with pytest.raises(MissingDependencyError, match=hint):
                export_onnx(nn.Linear(4, 2), (4,), tmp_path / "m.onnx")
            with pytest.raises(ImportError, match=r"nas\[onnx\]"):
                check_onnx(tmp_path / "m.onnx", nn.Linear(4, 2), (4,))
    assert only_file(tmp_path) == []


# ----------------------------------------------------------------------------- torch.export
@pytest.mark.parametrize("block", BLOCKS)
def test_pt2_round_trip_with_a_dynamic_batch(tmp_path: Path, block: str) -> None:
    module = macro_module(block)
    path = export_pt2(module, SHAPE, tmp_path / f"{block}.pt2")
    assert module.training and only_file(tmp_path) == [f"{block}.pt2"]
    loaded = torch.export.load(str(path))
    batch = loaded.graph_signature.user_inputs[0]
    assert not isinstance(next(n for n in loaded.graph.nodes if n.name == batch).meta["val"].shape[0], int)
    module.eval()
    for size in (1, 5):
        x = torch.randn(size, *SHAPE)
        with torch.no_grad():
            torch.testing.assert_close(loaded.module()(x), module(x), atol=1e-5, rtol=1e-4)


def test_pt2_refuses_a_module_whose_code_depends_on_the_batch(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"torch\.export could not capture BatchTwoOnly with a dynamic batch"):
        export_pt2(BatchTwoOnly(), (4,), tmp_path / "bad.pt2")
    assert only_file(tmp_path) == []


# ----------------------------------------------------------------------------- TorchScript
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("block", BLOCKS)
def test_torchscript_round_trip(tmp_path: Path, block: str) -> None:
    module = macro_module(block)
    path = export_torchscript(module, SHAPE, tmp_path / f"{block}.pt")
    assert module.training and only_file(tmp_path) == [f"{block}.pt"]
    loaded = torch.jit.load(str(path))
    module.eval()
    for batch in (1, 5):
        x = torch.randn(batch, *SHAPE)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), module(x), atol=1e-5, rtol=1e-4)


def test_torchscript_check_catches_a_baked_in_batch_size(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"TorchScript program bad\.pt output differs"):
        export_torchscript(BatchTwoOnly(), (4,), tmp_path / "bad.pt")
