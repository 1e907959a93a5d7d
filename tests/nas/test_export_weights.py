"""Weights files (nas.export.weights), the checkpoints a trial reports (nas.trial.TrialCheckpoints), and
finding a trial's graph and weights in a run directory (nas.rundir.RunView) — all without starting Ray."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from nas.cli import build_parser, search_config_from_args
from nas.datasets import TensorDataset
from nas.engine import build_strategy
from nas.export.weights import FORMAT, WeightsError, load_into, load_weights, read_metadata, save_weights
from nas.methods.multi_trial import trial_payload
from nas.run import SearchRun
from nas.rundir import GRAPHS_SUBDIR, SPACE_FILE, TRIAL_STATE, TRIAL_WEIGHTS, RunView
from nas.trainer import TrainConfig, train_and_evaluate
from nas.trial import TrialCheckpoints, resume_state
from search_spaces.compiler import GraphModule
from search_spaces.ir import ArchGraph
from search_spaces.spaces.macro import MacroArch, MacroSpace, StageChoice

SHAPE = (1, 8, 8)
CLASSES = 4


def small_graph(width: int = 8, block: str = "residual") -> ArchGraph:
    space = MacroSpace(input_shape=SHAPE, num_classes=CLASSES, num_stages=1, widths=(4, 8), depths=(1,),
                       kernels=(3,), stem_width=4, blocks=(block,))
    return space.to_graph(MacroArch((StageChoice(block, width, 1, 3, True),)))


def mixed_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    return {
        "float": torch.randn(3, 4, generator=g),
        "strided": base.t(),  # non-contiguous
        "slice": base[2:4],  # a view into a larger storage
        "int64": torch.arange(7),
        "bool": torch.tensor([True, False, True]),
        "half": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(5, generator=g).to(torch.bfloat16),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "grad": torch.randn(2, requires_grad=True),
    }


def assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert torch.equal(got[key], value.detach()), key


# ----------------------------------------------------------------------------- save / load
def test_round_trip_keeps_every_key_value_dtype_and_shape(tmp_path: Path) -> None:
    state = mixed_state()
    path = save_weights(state, tmp_path / "w.safetensors", arch_hash="abc123", extra={"epoch": "3"})
    assert path == tmp_path / "w.safetensors"
    assert_same(load_weights(path), state)
    assert_same(load_weights(path, arch_hash="abc123"), state)


def test_metadata(tmp_path: Path) -> None:
    path = save_weights({"w": torch.ones(2)}, tmp_path / "w.safetensors", arch_hash="abc", extra={"epoch": "2"})
    meta = read_metadata(path)
    assert meta["format"] == FORMAT == "nas-weights/1"
    assert meta["arch_hash"] == "abc" and meta["epoch"] == "2"
    assert len(meta["sha256"]) == 64
    with pytest.raises(ValueError, match="reserved"):
        save_weights({"w": torch.ones(2)}, tmp_path / "x.safetensors", arch_hash="abc", extra={"arch_hash": "x"})
    with pytest.raises(TypeError, match="str to str"):
        save_weights({"w": torch.ones(2)}, tmp_path / "x.safetensors", arch_hash="abc", extra={"epoch": 2})
    with pytest.raises(ValueError, match="arch_hash"):
        save_weights({"w": torch.ones(2)}, tmp_path / "x.safetensors", arch_hash="")


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights({"w": torch.zeros(3)}, path, arch_hash="a")
    save_weights({"w": torch.ones(3)}, path, arch_hash="a")  # replaces
    assert torch.equal(load_weights(path)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    # a failing save (a value that is not a tensor) leaves the old file and nothing else
    with pytest.raises(TypeError, match="not a tensor"):
        save_weights({"w": torch.zeros(3), "step": 5}, path, arch_hash="a")  # type: ignore[dict-item]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    assert torch.equal(load_weights(path)["w"], torch.ones(3))


def test_shared_tensors_and_tied_modules(tmp_path: Path) -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Linear(4, 4)
            self.decoder = nn.Linear(4, 4)
            self.decoder.weight = self.encoder.weight  # shared parameter under two names

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decoder(torch.relu(self.encoder(x)))

    torch.manual_seed(0)
    src = Tied()
    state = src.state_dict()
    assert state["encoder.weight"].data_ptr() == state["decoder.weight"].data_ptr()
    path = save_weights(state, tmp_path / "tied.safetensors", arch_hash="tied")
    dst = load_into(Tied(), load_weights(path, arch_hash="tied"))
    assert dst.decoder.weight is dst.encoder.weight  # still tied after loading
    x = torch.randn(2, 4)
    assert torch.equal(dst(x), src(x))


def test_graph_module_round_trip_reproduces_outputs(tmp_path: Path) -> None:
    graph = small_graph()
    trained = GraphModule(graph, seed=1)
    with torch.no_grad():  # non-default running statistics, so buffers matter
        trained.train()(torch.randn(8, *SHAPE))
    path = save_weights(trained.state_dict(), tmp_path / "m.safetensors", arch_hash=trained.arch_hash)
    fresh = load_into(GraphModule(graph, seed=2), load_weights(path, arch_hash=graph.canonical_hash()))
    x = torch.randn(3, *SHAPE)
    assert torch.equal(fresh.eval()(x), trained.eval()(x))


# ----------------------------------------------------------------------------- bad files
def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"no weights file .* does not exist"):
        load_weights(tmp_path / "absent.safetensors")
    with pytest.raises(WeightsError, match="is a directory"):
        load_weights(tmp_path)


@pytest.mark.parametrize("keep", [0, 4, 8, 20, -1, -9])
def test_truncated_file_is_a_weights_error(tmp_path: Path, keep: int) -> None:
    path = save_weights(mixed_state(), tmp_path / "w.safetensors", arch_hash="a")
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:keep])
    with pytest.raises(WeightsError, match=r"not a readable safetensors file|corrupted") as info:
        load_weights(cut)
    assert "cut.safetensors" in str(info.value) and "\n" not in str(info.value)


def test_tampered_header_and_data_are_weights_errors(tmp_path: Path) -> None:
    path = save_weights({"w": torch.arange(16, dtype=torch.float32)}, tmp_path / "w.safetensors",
                        arch_hash="a" * 64)
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    bad = tmp_path / "bad.safetensors"

    bad.write_bytes(data[:8] + b"\xff" + data[9:])  # header JSON broken
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_weights(bad)

    flipped = bytearray(data)
    flipped[8 + header_len + 5] ^= 0x01  # one bit of the tensor data: safetensors itself cannot tell
    bad.write_bytes(bytes(flipped))
    with pytest.raises(WeightsError, match="checksum does not match"):
        load_weights(bad)

    edited = data.replace(b"a" * 64, b"b" * 64)  # the arch hash rewritten in place (same length)
    assert edited != data
    bad.write_bytes(edited)
    with pytest.raises(WeightsError, match="checksum does not match"):
        load_weights(bad)


def test_file_of_another_format_is_rejected(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, plain)
    with pytest.raises(WeightsError, match=r"not a nas weights file .*no format metadata"):
        load_weights(plain)
    save_file({"w": torch.ones(2)}, plain, metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="format 'pt'"):
        load_weights(plain)
    pickled = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, pickled)  # a pickle is never unpickled
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_weights(pickled)


def test_weights_of_another_architecture_name_both_hashes(tmp_path: Path) -> None:
    ours, theirs = small_graph(8), small_graph(4)
    assert ours.canonical_hash() != theirs.canonical_hash()
    module = GraphModule(theirs)
    path = save_weights(module.state_dict(), tmp_path / "w.safetensors", arch_hash=module.arch_hash)
    with pytest.raises(WeightsError) as info:
        load_weights(path, arch_hash=ours.canonical_hash())
    message = str(info.value)
    assert f"weights are for architecture {theirs.canonical_hash()}" in message
    assert f"this graph is {ours.canonical_hash()}" in message


def test_load_into_lists_missing_unexpected_and_mismatched_keys() -> None:
    module = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    state = {"0.weight": torch.zeros(2, 4), "0.bias": torch.zeros(2), "9.weight": torch.zeros(1)}
    with pytest.raises(WeightsError) as info:
        load_into(module, state)
    message = str(info.value)
    assert "missing 2 key(s): 2.weight, 2.bias" in message
    assert "unexpected 1 key(s): 9.weight" in message
    assert "0.weight (2, 4) vs (2, 3)" in message
    assert "Error(s) in loading state_dict" not in message and "\n" not in message
    before = module[0].weight.clone()
    assert torch.equal(module[0].weight, before)  # nothing was loaded

    ours, theirs = GraphModule(small_graph(8)), GraphModule(small_graph(4))
    with pytest.raises(WeightsError, match="shape mismatch"):
        load_into(ours, theirs.state_dict())


# ----------------------------------------------------------------------------- a trial's weights
def test_trial_checkpoints_stage_each_epoch_for_the_report(tmp_path: Path) -> None:
    graph = small_graph()
    module = GraphModule(graph)
    saver = TrialCheckpoints(graph.canonical_hash())
    assert saver.fields() == {} and saver.take() is None  # nothing saved yet: the report carries no checkpoint
    saver.save_state_dict(module.state_dict(), 1)
    first = saver.staged
    with torch.no_grad():
        next(module.parameters()).add_(1.0)
    saver.save_state_dict(module.state_dict(), 2)
    assert first is not None and not first.exists()  # a newer save replaces the staged one
    staged = saver.take()
    assert staged is not None and saver.take() is None
    path = staged / TRIAL_WEIGHTS
    assert read_metadata(path)["epoch"] == "2" and sorted(p.name for p in staged.iterdir()) == [TRIAL_WEIGHTS]
    assert_same(load_weights(path, arch_hash=graph.canonical_hash()), module.state_dict())
    saver.discard(staged)  # after the report: Tune copied it to the run's storage
    assert not staged.exists()


def test_trial_checkpoint_failure_does_not_fail_the_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    import nas.trial

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nas.trial, "save_weights", full_disk)
    saver = TrialCheckpoints("abc")
    saver.save_state_dict({"w": torch.ones(1)}, 1)  # must not raise
    fields = saver.fields()
    assert list(fields) == ["weights_error"] and "after epoch 1" in fields["weights_error"]
    assert saver.take() is None


class WorkerDied(BaseException):
    """The trial's process dies after a report (no handler in the training loop catches this)."""


def test_a_trial_that_runs_again_continues_from_its_last_checkpoint(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset("noise", torch.randn(48, *SHAPE, generator=g), torch.randint(0, CLASSES, (48,), generator=g),
                         torch.randn(16, *SHAPE, generator=g), torch.randint(0, CLASSES, (16,), generator=g), CLASSES)
    graph = small_graph(4, block="conv")
    config = TrainConfig(epochs=3, batch_size=16)
    uninterrupted = train_and_evaluate(graph, data, config, "cpu", lambda metrics: None)
    saver = TrialCheckpoints(graph.canonical_hash())
    stored: list[Path] = []

    def report(metrics: dict) -> None:  # as Trial._report: Tune copies the staged checkpoint to storage
        staged = saver.take()
        assert staged is not None, "every epoch's report carries a checkpoint"
        stored.append(tmp_path / "storage" / f"checkpoint_{len(stored):06d}")
        shutil.copytree(staged, stored[-1])
        saver.discard(staged)
        if metrics["epoch"] == 2:
            raise WorkerDied

    with pytest.raises(WorkerDied):
        train_and_evaluate(graph, data, config, "cpu", report, on_epoch_end=saver.save)
    assert sorted(p.name for p in stored[-1].iterdir()) == [TRIAL_STATE, TRIAL_WEIGHTS]
    assert read_metadata(stored[-1] / TRIAL_WEIGHTS)["epoch"] == "2"
    assert resume_state(str(stored[-1]), "another architecture") is None
    assert resume_state(str(tmp_path / "gone"), graph.canonical_hash()) is None  # start over, never crash
    state = resume_state(str(stored[-1]), graph.canonical_hash())
    assert state is not None and state.epoch == 2
    resumed = train_and_evaluate(graph, data, config, "cpu", lambda metrics: None, resume=state)
    assert resumed["val_acc"] == uninterrupted["val_acc"] and resumed["train_loss"] == uninterrupted["train_loss"]


# ----------------------------------------------------------------------------- run directories
def fabricated_run(run_dir: Path, with_space_file: bool = True, store_graphs: bool = False) -> dict[int, str]:
    """A run directory as `nas search` leaves it for a (1, 8, 8), 4-class dataset, driven by hand:
    trial 0 ok with weights, 1 ok without, 2 failed. Returns the trials' hashes. ``store_graphs``:
    the graphs are stored in graphs/ (as a search does); otherwise readers rebuild them from space.json."""
    config = search_config_from_args(build_parser().parse_args(["search", "--trials", "3", "--seed", "0"]))
    options = {"input_shape": list(SHAPE), "num_classes": CLASSES}
    space = MacroSpace(**options)
    identify, _ = trial_payload(space, config.objective)
    run = SearchRun(run_dir, config.to_dict(), space, build_strategy(config, space), 3, durable=False,
                    identify=identify, graph_of=(lambda payload: payload[0]) if store_graphs else None)
    if with_space_file:
        (run_dir / SPACE_FILE).write_text(json.dumps({"space": "macro", "options": options}))
    hashes = {}
    for trial in range(3):
        record, (graph, _) = run.next_trial()  # type: ignore[misc]
        hashes[trial] = record.hash
        if trial == 0:
            module = GraphModule(graph)
            path = run_dir / "tune" / "trials" / "trial_0" / TRIAL_WEIGHTS
            path.parent.mkdir(parents=True)
            save_weights(module.state_dict(), path, arch_hash=module.arch_hash)
            run.finish(0, 0.5, metrics={"val_acc": 0.5, "weights": str(path)})
        elif trial == 1:
            run.finish(1, 0.25, metrics={"val_acc": 0.25})
        else:
            run.finish(2, None, reason="NaN loss")
    run.close()
    return hashes


@pytest.mark.parametrize("store_graphs", [False, True])
def test_graph_and_weights_of_trial(tmp_path: Path, store_graphs: bool) -> None:
    run_dir = tmp_path / "run"
    hashes = fabricated_run(run_dir, store_graphs=store_graphs)
    assert (run_dir / GRAPHS_SUBDIR).is_dir() == store_graphs
    run = RunView(run_dir)
    space = run.builtin_space()
    assert space is not None and space.input_shape == SHAPE and space.num_classes == CLASSES  # from space.json
    for trial in range(3):
        assert run.graph(trial).canonical_hash() == hashes[trial]
    weights = run.weights(0)
    assert weights == run_dir / "tune" / "trials" / "trial_0" / TRIAL_WEIGHTS
    assert run.weights(1) is None and run.weights(2) is None
    # a cached trial carries the metrics of the earlier trial of its architecture, so its weights
    run.records[1].status, run.records[1].metrics = "cached", dict(run.records[0].metrics)
    assert run.weights(1) == weights
    graph = run.graph(0)
    load_into(GraphModule(graph), load_weights(weights, arch_hash=graph.canonical_hash()))
    with pytest.raises(ValueError, match=r"no trial 9 .*trials 0\.\.2"):
        run.graph(9)
    with pytest.raises(ValueError, match="no trial 9"):
        run.weights(9)


def test_stored_graphs_need_no_space(tmp_path: Path) -> None:
    """A run whose graphs are stored is readable without its space (a user's space: no space.json)."""
    hashes = fabricated_run(tmp_path / "run", with_space_file=False, store_graphs=True)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["space"] = "my_module.MySpace"  # not a built-in space
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    run = RunView(tmp_path / "run")
    assert run.builtin_space() is None
    assert [run.graph(t).canonical_hash() for t in range(3)] == [hashes[t] for t in range(3)]
    assert run.describe(run.records[0]) == run.records[0].label and " -> " in run.records[0].label  # journal label


def test_moved_run_directory_finds_its_own_weights(tmp_path: Path) -> None:
    fabricated_run(tmp_path / "run")
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(tmp_path / "run", moved)
    shutil.rmtree(tmp_path / "run")
    run = RunView(moved)
    assert run.weights(0) == moved / "tune" / "trials" / "trial_0" / TRIAL_WEIGHTS
    (moved / "tune" / "trials" / "trial_0" / TRIAL_WEIGHTS).unlink()
    assert run.weights(0) is None  # journaled, but the file is gone


def test_run_without_space_file_cannot_rebuild_the_graph_silently(tmp_path: Path) -> None:
    fabricated_run(tmp_path / "run", with_space_file=False)
    run = RunView(tmp_path / "run")  # falls back to the config's options: default (3, 32, 32) input
    with pytest.raises(ValueError, match=r"rebuilds to a different graph.*space\.json"):
        run.graph(0)
    (tmp_path / "run" / SPACE_FILE).write_text(json.dumps({"space": "macro", "options": []}))
    with pytest.raises(ValueError, match="does not describe a space"):
        run.graph(0)
