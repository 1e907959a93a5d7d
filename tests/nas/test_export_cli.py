"""`nas export`: every architecture source, every format, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datapaths import NB201_TABLE
from test_export_weights import fabricated_run

from nas.cli import main
from nas.datasets import load_digits
from nas.export.exporter import import_source
from nas.export.weights import load_weights, read_metadata
from nas.rundir import RunView
from search_spaces.compiler import GraphModule
from search_spaces.reference import create_model


def test_export_best_trial_of_a_run_with_its_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    fabricated_run(run_dir)
    out = tmp_path / "out" / "best_net.py"
    assert main(["export", str(run_dir), "--best", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    source = out.read_text()
    run = RunView(run_dir)
    graph = run.graph(0)  # trial 0 scored best (0.5)
    assert graph.canonical_hash() in source and "trial: 0" in source
    model = import_source(out).BestNet()
    model.load_state_dict(load_weights(out.with_suffix(".safetensors"), arch_hash=graph.canonical_hash()))
    compiled = GraphModule(graph)
    compiled.load_state_dict(load_weights(run.weights(0)))  # type: ignore[arg-type]
    x = torch.randn(3, *compiled.input_shape)
    model.eval(), compiled.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), compiled(x), atol=1e-6, rtol=0)
    assert read_metadata(out.with_suffix(".safetensors"))["class_name"] == "BestNet"


def test_a_runs_export_records_its_datasets_normalisation(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    fabricated_run(run_dir)  # trained on digits (the configuration's default dataset)
    out = tmp_path / "best.py"
    assert main(["export", str(run_dir), "--best", "--out", str(out)]) == 0
    cfg = import_source(out).PRETRAINED_CFG
    digits = load_digits()
    assert (cfg["dataset"], cfg["max_pixel_value"], cfg["mean"], cfg["std"]) == ("digits", 16.0, digits.mean,
                                                                                 digits.std)
    assert cfg["file"] == "best.safetensors" and cfg["input_size"] == (1, 8, 8)
    model = import_source(out).create_model(pretrained=True)  # the weights beside the file, checked
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 4)


def test_torchscript_is_marked_deprecated(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "torchscript is deprecated in torch, prefer pt2" in text and "pt2: torch.export" in text


def test_trial_without_weights_is_exported_with_seed_initialisation(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    fabricated_run(run_dir)
    out = tmp_path / "t1.py"
    assert main(["export", str(run_dir), "--trial", "1", "--out", str(out)]) == 2  # refused: untrained
    assert not out.exists()
    assert main(["export", str(run_dir), "--trial", "1", "--out", str(out), "--allow-untrained"]) == 0
    assert "seed initialisation" in out.read_text() and not out.with_suffix(".safetensors").exists()


def test_untrained_export_is_refused_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    fabricated_run(run_dir)
    message = _error(capsys, ["export", str(run_dir), "--trial", "1", "--out", str(tmp_path / "t1.py")])
    assert "trial 1" in message and "no trained weights" in message and "--allow-untrained" in message
    weights = RunView(run_dir).weights(0)
    assert weights is not None
    weights.unlink()  # e.g. a worker node's disk that never reached the run store
    message = _error(capsys, ["export", str(run_dir), "--best", "--out", str(tmp_path / "best.py")])
    assert "trial 0" in message and "no trained weights" in message


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("pt2", ".pt2"), ("torchscript", ".pt")])
def test_reference_model_to_onnx_pt2_and_torchscript(tmp_path: Path, fmt: str, suffix: str) -> None:
    out = tmp_path / f"r18{suffix}"
    assert main(["export", "--model", "resnet18", "--num-classes", "5", "--img-size", "32", "--format", fmt,
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 1_000_000  # 11 M parameters


@pytest.mark.skipif(not NB201_TABLE.is_file(), reason="NB201 table not available")
def test_nb201_cell_by_index(tmp_path: Path) -> None:
    out = tmp_path / "cell.py"
    assert main(["export", "--nb201-index", "6111", "--table", str(NB201_TABLE), "--out", str(out)]) == 0
    module = import_source(out)
    model = module.create_model()
    assert type(model).__name__ == "CellModel"  # "Cell" is the cell class the file defines
    assert sum(p.numel() for p in model.parameters()) == 1_073_466
    assert module.PRETRAINED_CFG["dataset"] == "cifar10"  # the benchmark's training data


def test_graph_file_with_weights_of_an_earlier_export(tmp_path: Path) -> None:
    graph = create_model("resnet18_cifar", num_classes=4)
    (tmp_path / "g.json").write_text(graph.to_json())
    first = tmp_path / "first.py"
    assert main(["export", "--graph", str(tmp_path / "g.json"), "--out", str(first), "--seed", "3"]) == 0
    module = GraphModule(graph, seed=3)
    from nas.export.weights import save_weights

    save_weights(module.state_dict(), tmp_path / "w.safetensors", arch_hash=module.arch_hash)
    assert main(["export", "--graph", str(tmp_path / "g.json"), "--weights", str(tmp_path / "w.safetensors"),
                 "--out", str(first)]) == 0
    again = tmp_path / "again.py"  # the exported weights (exported key names) are accepted too
    assert main(["export", "--graph", str(tmp_path / "g.json"), "--weights", str(first.with_suffix(".safetensors")),
                 "--out", str(again)]) == 0
    a, b = (load_weights(p.with_suffix(".safetensors")) for p in (first, again))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nas: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_bad_inputs_get_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = create_model("resnet18_cifar", num_classes=4)
    (tmp_path / "g.json").write_text(graph.to_json())
    other = GraphModule(create_model("resnet18_cifar", num_classes=5))
    from nas.export.weights import save_weights

    save_weights(other.state_dict(), tmp_path / "other.safetensors", arch_hash=other.arch_hash)
    good = GraphModule(graph)
    save_weights(good.state_dict(), tmp_path / "good.safetensors", arch_hash=good.arch_hash)
    (tmp_path / "trunc.safetensors").write_bytes((tmp_path / "good.safetensors").read_bytes()[:5000])
    out = str(tmp_path / "x.py")
    g = str(tmp_path / "g.json")
    assert "architecture" in _error(capsys, ["export", "--graph", g, "--weights", str(tmp_path / "other.safetensors"),
                                             "--out", out])
    assert "truncated or corrupted" in _error(capsys, ["export", "--graph", g, "--weights",
                                                       str(tmp_path / "trunc.safetensors"), "--out", out])
    assert "exactly one architecture" in _error(capsys, ["export", "--out", out])
    assert "exactly one architecture" in _error(capsys, ["export", "--graph", g, "--model", "vgg16", "--out", out])
    assert "must end in .onnx" in _error(capsys, ["export", "--graph", g, "--format", "onnx", "--out", out])
    assert "does not exist" in _error(capsys, ["export", "--graph", str(tmp_path / "nope.json"), "--out", out])
    assert "unknown reference model" in _error(capsys, ["export", "--model", "nope", "--out", out])
    assert "not a run directory" in _error(capsys, ["export", str(tmp_path), "--out", out])
    run_dir = tmp_path / "run"
    fabricated_run(run_dir)
    assert "no finished trial 7" in _error(capsys, ["export", str(run_dir), "--trial", "7", "--out", out])
    assert not Path(out).exists()
