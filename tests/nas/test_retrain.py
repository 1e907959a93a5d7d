"""nas.retrain / `nas train`: retraining writes its outputs and learns, an interrupted run resumes
bit-identically, checkpoints of other trainings and damaged ones are refused with one clear line,
augmentation is seeded and keeps shapes, a search run's best / given trial is rebuilt and trained,
and bad command lines exit 2."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from nas.augment import crop_padding, make_augment, random_crop_flip
from nas.cli import main
from nas.datasets import TensorDataset, load_dataset
from nas.export.weights import load_weights
from nas.retrain import (
    CHECKPOINT,
    GRAPH,
    METRICS,
    WEIGHTS,
    CheckpointError,
    load_checkpoint,
    load_trained,
    retrain,
)
from nas.run import SearchRun
from nas.rundir import RunView
from nas.strategies import make_strategy
from nas.trainer import TrainConfig
from search_spaces.ir import ArchGraph
from search_spaces.spaces import make_space

torch.set_num_threads(1)

CONFIG = TrainConfig(epochs=3, batch_size=32, lr=0.1, seed=0)
SPACE_OPTIONS = {"num_stages": 1, "widths": [8], "depths": [1], "kernels": [3], "stem_width": 8,
                 "blocks": ["conv", "residual"]}


class Stop(KeyboardInterrupt):
    """Raised from the per-epoch callback: an interruption (Ctrl-C) after a checkpoint."""


@pytest.fixture(scope="module")
def digits() -> TensorDataset:
    return load_dataset("digits", limit=192)


def tiny_graph(width: int = 8) -> ArchGraph:
    """input (1, 8, 8) -> conv-bn-relu 3x3 -> global pool -> dropout 0.2 -> linear (10)."""
    g = ArchGraph("tiny")
    g.add("in", "input", shape=[1, 8, 8])
    g.add("c", "conv", ["in"], out=width, kernel=3)
    g.add("pool", "global_pool", ["c"])
    g.add("drop", "dropout", ["pool"], p=0.2)
    g.add("fc", "linear", ["drop"], out=10)
    return g


def stop_after(epochs: int) -> Any:
    def callback(metrics: dict[str, float]) -> None:
        if metrics["epoch"] >= epochs:
            raise Stop
    return callback


def timeless(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in m.items() if "seconds" not in k} for m in history]


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nas: error: "), err
    return lines[0]


# ----------------------------------------------------------------------------------------- training
def test_retrain_learns_and_writes_its_outputs(tmp_path: Path, digits: TensorDataset) -> None:
    graph, lines = tiny_graph(), []
    final = retrain(graph, digits, tmp_path, CONFIG, log=lines.append)
    assert {CHECKPOINT, WEIGHTS, METRICS, GRAPH} <= {p.name for p in tmp_path.iterdir()}
    metrics = json.loads((tmp_path / METRICS).read_text())
    history = metrics["history"]
    assert [m["epoch"] for m in history] == [1, 2, 3]
    assert all(math.isfinite(v) for m in history for k, v in m.items() if k != "precision")
    assert {m["precision"] for m in history} == {"fp32"}  # auto on CPU
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert metrics["final"] == final and final["epochs"] == 3 and final["params"] > 0
    assert final["val_acc"] == history[-1]["val_acc"] and final["best_val_acc"] == max(m["val_acc"] for m in history)
    assert metrics["arch_hash"] == graph.canonical_hash()
    assert ArchGraph.from_json((tmp_path / GRAPH).read_text()) == graph
    assert sum(line.startswith("epoch ") for line in lines) == 3

    model = load_trained(tmp_path)  # weights.safetensors is a nas-weights/1 file of the compiled graph
    state = load_checkpoint(tmp_path / CHECKPOINT).state
    assert state.epoch == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, state.model[key]), key
    assert model(digits.val_x[:5]).shape == (5, 10)


@pytest.mark.parametrize("optimizer, schedule, augment", [("sgd", "cosine", "crop-flip"), ("adam", "step", "crop")])
def test_interrupted_retrain_resumes_bit_identically(tmp_path: Path, digits: TensorDataset, optimizer: str,
                                                      schedule: str, augment: str) -> None:
    config = TrainConfig(epochs=3, batch_size=32, lr=0.1 if optimizer == "sgd" else 0.01, optimizer=optimizer,
                         schedule=schedule, seed=3)
    whole = retrain(tiny_graph(), digits, tmp_path / "whole", config, augment=augment)

    out = tmp_path / "interrupted"
    with pytest.raises(Stop):
        retrain(tiny_graph(), digits, out, config, augment=augment, callback=stop_after(1))
    assert load_checkpoint(out / CHECKPOINT).state.epoch == 1 and not (out / WEIGHTS).exists()
    seen, lines = [], []
    resumed = retrain(tiny_graph(), digits, out, config, augment=augment, log=lines.append,
                      callback=lambda m: seen.append(m["epoch"]))
    assert seen == [2, 3] and "after epoch 1/3" in lines[0]

    a, b = load_weights(tmp_path / "whole" / WEIGHTS), load_weights(out / WEIGHTS)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    history = [json.loads((d / METRICS).read_text())["history"] for d in (tmp_path / "whole", out)]
    assert timeless(history[0]) == timeless(history[1])
    assert {k: v for k, v in whole.items() if "seconds" not in k} == \
        {k: v for k, v in resumed.items() if "seconds" not in k}


def test_finished_training_is_not_repeated(tmp_path: Path, digits: TensorDataset) -> None:
    config = TrainConfig(epochs=1, batch_size=32)
    first = retrain(tiny_graph(), digits, tmp_path, config, augment="none")
    lines: list[str] = []
    again = retrain(tiny_graph(), digits, tmp_path, config, augment="none", log=lines.append,
                    callback=lambda m: pytest.fail("trained again"))
    assert "already complete" in lines[0] and again == first


def test_checkpoint_of_another_training_is_refused(tmp_path: Path, digits: TensorDataset) -> None:
    with pytest.raises(Stop):
        retrain(tiny_graph(), digits, tmp_path, CONFIG, callback=stop_after(1))
    with pytest.raises(CheckpointError, match=r"different training.*arch_hash: '[0-9a-f]+' -> '[0-9a-f]+'"):
        retrain(tiny_graph(width=6), digits, tmp_path, CONFIG)
    other = TrainConfig(**{**CONFIG.to_dict(), "lr": 0.05})
    with pytest.raises(CheckpointError, match=r"train\.lr: 0\.1 -> 0\.05"):
        retrain(tiny_graph(), digits, tmp_path, other)
    with pytest.raises(CheckpointError, match=r"augment: 'crop-flip' -> 'none'"):
        retrain(tiny_graph(), digits, tmp_path, CONFIG, augment="none")
    assert load_checkpoint(tmp_path / CHECKPOINT).state.epoch == 1  # untouched


def test_damaged_checkpoint_gives_one_clear_error(tmp_path: Path, digits: TensorDataset, capsys) -> None:
    with pytest.raises(Stop):
        retrain(tiny_graph(), digits, tmp_path, CONFIG, callback=stop_after(1))
    path = tmp_path / CHECKPOINT
    good = path.read_bytes()
    path.write_bytes(good[:-100])  # truncated
    with pytest.raises(CheckpointError, match="truncated or corrupted; delete it"):
        retrain(tiny_graph(), digits, tmp_path, CONFIG)
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))  # one flipped byte in the tensor data
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)
    path.write_bytes(good[:len(good) // 3])
    graph_file = tmp_path / "g.json"
    graph_file.write_text(tiny_graph().to_json())
    code = main(["train", "--graph", str(graph_file), "--out", str(tmp_path), "--epochs", "3", "--batch-size", "32",
                 "--data-limit", "192"])
    assert code == 2 and "checkpoint" in one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------- augmentation
def test_augmentation_is_seeded_keeps_shapes_and_crops_windows() -> None:
    x = torch.randn(16, 3, 32, 32)
    out1 = random_crop_flip(x, torch.Generator().manual_seed(0))
    out2 = random_crop_flip(x, torch.Generator().manual_seed(0))
    out3 = random_crop_flip(x, torch.Generator().manual_seed(1))
    assert out1.shape == x.shape and out1.dtype == x.dtype
    assert torch.equal(out1, out2) and not torch.equal(out1, out3)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(len(x)):  # every sample is a (possibly mirrored) 32x32 window of its padded image
        windows = [padded[i, :, r:r + 32, c:c + 32] for r in range(9) for c in range(9)]
        assert any(torch.equal(out1[i], w) or torch.equal(out1[i], w.flip(-1)) for w in windows), i
    assert not torch.equal(out1, x)

    digits_like = torch.randn(8, 1, 8, 8)
    crop_only = make_augment("crop", (1, 8, 8))
    shifted = crop_only(digits_like, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(digits_like, (1, 1, 1, 1))
    for i in range(len(digits_like)):  # padding 1, no flips
        assert any(torch.equal(shifted[i], padded[i, :, r:r + 8, c:c + 8]) for r in range(3) for c in range(3))
    assert [crop_padding(s) for s in (4, 8, 12, 16, 28, 32, 224)] == [1, 1, 1, 4, 4, 4, 4]
    assert make_augment("none", (1, 8, 8)) is None
    with pytest.raises(ValueError, match="image samples"):
        make_augment("crop-flip", (64,))
    with pytest.raises(ValueError, match="unknown augmentation"):
        make_augment("mixup", (1, 8, 8))


# --------------------------------------------------------------------------------------- run trials
@pytest.fixture
def fake_run(tmp_path: Path) -> tuple[Path, dict[int, float | None]]:
    """A finished 3-trial random search on digits (macro space for 8x8) with fabricated results:
    scores 0.3, failed, 0.6 in proposal order. Returns the run dir and {trial: score}."""
    run_dir = tmp_path / "run"
    config = {"strategy": "random", "strategy_options": {}, "seed": 0, "space": "macro",
              "space_options": SPACE_OPTIONS, "trials": 3, "dataset": "digits", "data_root": None,
              "data_options": {"val_fraction": 0.2, "limit": 120}, "train": {}, "benchmark": None}
    space = make_space("macro", input_shape=(1, 8, 8), num_classes=10, **SPACE_OPTIONS)
    run = SearchRun(run_dir, config, space, make_strategy("random", space, seed=0), 3, durable=False)
    scores: dict[int, float | None] = {}
    for score in (0.3, None, 0.6):
        nxt = run.next_trial()
        assert nxt is not None
        record = run.finish(nxt[0].trial, score, reason=None if score else "NaN/inf loss at epoch 1")
        scores[record.trial] = record.score
    run.close()
    return run_dir, scores


def test_run_best_and_given_trial(fake_run: tuple[Path, dict[int, float | None]], tmp_path: Path,
                                  capsys) -> None:
    run_dir, scores = fake_run
    best_id = max((t for t, s in scores.items() if s is not None), key=lambda t: scores[t])
    failed_id = next(t for t, s in scores.items() if s is None)
    assert RunView(run_dir).pick().trial == best_id
    with pytest.raises(ValueError, match=rf"trial {failed_id} of run .* failed \(NaN/inf loss"):
        RunView(run_dir).pick(failed_id)
    with pytest.raises(ValueError, match="has no trial 99"):
        RunView(run_dir).pick(99)

    out = tmp_path / "best"
    code = main(["train", "--run", str(run_dir), "--best", "--out", str(out), "--epochs", "1", "--batch-size", "64",
                 "--data-limit", "96"])
    printed = capsys.readouterr().out
    assert code == 0 and f"trial {best_id} (score 0.6000)" in printed and "retrained macro[" in printed
    record = RunView(run_dir).pick()
    assert ArchGraph.from_json((out / GRAPH).read_text()).canonical_hash() == record.hash
    assert json.loads((out / METRICS).read_text())["config"]["data"]["dataset"] == "digits"

    other = next(t for t, s in scores.items() if s is not None and t != best_id)
    out = tmp_path / "other"
    assert main(["train", "--run", str(run_dir), "--trial", str(other), "--out", str(out), "--epochs", "1",
                 "--augment", "none", "--data-limit", "96"]) == 0
    assert json.loads((out / METRICS).read_text())["arch_hash"] == RunView(run_dir).pick(other).hash


# -------------------------------------------------------------------------------------------- CLI
def test_cli_trains_a_graph_file_and_resumes(tmp_path: Path, capsys) -> None:
    graph_file = tmp_path / "g.json"
    graph_file.write_text(tiny_graph().to_json())
    argv = ["train", "--graph", str(graph_file), "--out", str(tmp_path / "out"), "--epochs", "2", "--batch-size",
            "32", "--data-limit", "128", "--schedule", "step"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "epoch 2/2" in first and "retrained tiny" in first and "weights.safetensors" in first
    assert main(argv) == 0
    assert "already complete" in capsys.readouterr().out


def test_cli_trains_in_bf16_when_asked(tmp_path: Path, capsys) -> None:
    graph_file = tmp_path / "g.json"
    graph_file.write_text(tiny_graph().to_json())
    out = tmp_path / "out"
    assert main(["train", "--graph", str(graph_file), "--out", str(out), "--epochs", "1", "--batch-size", "32",
                 "--data-limit", "128", "--precision", "bf16"]) == 0
    metrics = json.loads((out / METRICS).read_text())
    assert metrics["config"]["train"]["precision"] == "bf16" and metrics["history"][0]["precision"] == "bf16"
    assert math.isfinite(metrics["final"]["val_loss"])


@pytest.mark.parametrize("argv, message", [
    (["--graph", "{tmp}/missing.json"], "graph file .*missing.json does not exist"),
    (["--graph", "{tmp}/g.json", "--run", "{tmp}"], "exactly one of --graph"),
    ([], "exactly one of --graph"),
    (["--graph", "{tmp}/g.json", "--trial", "0"], "do not apply to --graph"),
    (["--run", "{run}", "--trial", "0", "--best"], "--trial ID or --best, not both"),
    (["--run", "{tmp}/nowhere"], "is not a run directory"),
    (["--run", "{run}", "--trial", "99"], "has no trial 99"),
    (["--run", "{run}", "--trial", "{failed}"], "failed"),
    (["--graph", "{tmp}/g.json", "--augment", "none", "--dataset", "nope"], "unknown dataset"),
    (["--graph", "{tmp}/bad.json"], "not valid JSON"),
    (["--graph", "{tmp}/g.json", "--precision", "fp16"], "precision 'fp16' needs a CUDA device"),
    (["--graph", "{tmp}/g.json", "--precision", "fp64"], "TrainConfig.precision must be one of"),
])
def test_cli_bad_input_exits_2_with_one_line(argv: list[str], message: str, tmp_path: Path,
                                            fake_run: tuple[Path, dict[int, float | None]], capsys) -> None:
    run_dir, scores = fake_run
    (tmp_path / "g.json").write_text(tiny_graph().to_json())
    (tmp_path / "bad.json").write_text("{not json")
    failed = next(t for t, s in scores.items() if s is None)
    argv = [a.format(tmp=tmp_path, run=run_dir, failed=failed) for a in argv]
    assert main(["train", *argv, "--out", str(tmp_path / "out")]) == 2
    assert re.search(message, one_error_line(capsys.readouterr().err))
    assert not (tmp_path / "out" / CHECKPOINT).exists()
