"""Retraining one architecture from scratch with the full budget (``nas train``), resumably.

The architecture comes from an ArchGraph JSON file (:func:`load_graph_file`) or from a search run
(:class:`nas.rundir.RunView` + :func:`trial_graph`: the graph the search stored, or the journal's
encoding rebuilt in the run's space for another dataset's input shape and classes). Training is
:func:`nas.trainer.train_and_evaluate` with a per-batch augmentation (:mod:`nas.augment`)
and a checkpoint after every epoch.

Output directory::

    checkpoint.safetensors  after every epoch (atomic replace): everything needed to continue
    graph.json              the architecture (ArchGraph JSON)
    weights.safetensors     at the end: the GraphModule's state_dict in the ``nas-weights/1`` format of
                            :mod:`nas.export.weights` (metadata: format, arch_hash, sha256, graph, epochs)
    metrics.json            at the end: per-epoch history and final metrics

Checkpoint format (:data:`CHECKPOINT_FORMAT`): one safetensors file. Its tensors are every tensor
of the training state (model and optimizer state, generator states), named by their path in the
state, e.g. ``model.nodes.c.weight`` or ``optimizer.state.0.momentum_buffer``; the metadata holds
``format``, ``sha256`` (of every tensor's name, dtype, shape and bytes: a damaged file is refused)
and ``index``, a JSON skeleton of the non-tensor structure (epoch, optimizer param groups,
scheduler state, metrics history, the training's identity) in which each tensor appears as
``{"__tensor__": name}``. Nothing is ever unpickled.

Resume: rerunning the same training in the same directory continues after the last checkpoint
with the generator states of the data order, the augmentation and dropout restored, so on CPU
the final weights and metrics are bit-identical to an uninterrupted run. A checkpoint of another
architecture, configuration or dataset is refused with the list of differences.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas.augment import make_augment
from nas.datasets import TensorDataset
from nas.export.weights import load_into, load_weights, save_weights
from nas.journal import _fsync_dir, atomic_write_json, config_diff
from nas.rundir import RunView, TrialRecord, graph_path
from nas.trainer import Metrics, TrainConfig, TrainState, train_and_evaluate
from search_spaces.compiler import GraphModule
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.spaces import make_space

CHECKPOINT = "checkpoint.safetensors"
WEIGHTS = "weights.safetensors"
METRICS = "metrics.json"
GRAPH = "graph.json"
CHECKPOINT_FORMAT = "nas-retrain-checkpoint/1"


class CheckpointError(InputError):
    """A checkpoint or weights file is unreadable, or belongs to a different training."""


# ----------------------------------------------------------------------------------------------
# tensors + JSON skeleton (no pickle)


def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able skeleton of ``obj``; its tensors go to ``tensors`` (CPU copies) under their path."""
    if isinstance(obj, torch.Tensor):
        name = path or "tensor"
        while name in tensors:
            name += "_"
        tensors[name] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": name}
    if isinstance(obj, dict):
        items = [[k, _flatten(v, f"{path}.{k}" if path else str(k), tensors)] for k, v in obj.items()]
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return dict(items)
        if not all(isinstance(k, (str, int, float, bool)) or k is None for k in obj):
            raise TypeError(f"cannot store a dict key of type {type(next(iter(obj))).__name__} at {path!r}")
        return {"__items__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} at {path!r} in a checkpoint")


def _unflatten(obj: Any, tensors: Callable[[str], torch.Tensor]) -> Any:
    """Inverse of :func:`_flatten`, fetching tensors by name."""
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors(obj["__tensor__"])
        if set(obj) == {"__tuple__"}:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        if set(obj) == {"__items__"}:
            return {k: _unflatten(v, tensors) for k, v in obj["__items__"]}
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    return obj


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (in name order)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically: temp file in the same directory, fsync, rename, fsync dir."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of a safetensors file; CheckpointError (one line) when it is damaged."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as err:  # safetensors raises its own error types for truncated or garbled files
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is unreadable ({detail}): the file is truncated or corrupted; "
                              "delete it (training then restarts from scratch)") from None
    if "sha256" in metadata and _digest(tensors) != metadata["sha256"]:
        raise CheckpointError(f"checkpoint {path} is corrupted (checksum mismatch); delete it "
                              "(training then restarts from scratch)")
    return metadata, tensors


# ----------------------------------------------------------------------------------------------
# checkpoints and outputs


@dataclass
class Checkpoint:
    """A checkpoint read back: the training ``state`` and the ``identity`` it belongs to."""

    state: TrainState
    identity: dict[str, Any]


def save_checkpoint(path: Path, state: TrainState, identity: dict[str, Any]) -> None:
    """Store ``state`` (after ``state.epoch`` epochs) of the training ``identity`` at ``path``."""
    tensors: dict[str, torch.Tensor] = {}
    payload = {"epoch": state.epoch, "model": dict(state.model), "optimizer": state.optimizer,
               "scheduler": state.scheduler, "rng": state.rng, "best_val_acc": state.best_val_acc,
               "best_epoch": state.best_epoch, "history": state.history, "identity": identity}
    if state.scaler is not None:  # fp16's loss scale (absent otherwise, as in checkpoints made before it)
        payload["scaler"] = state.scaler
    index = _flatten(payload, "", tensors)
    metadata = {"format": CHECKPOINT_FORMAT, "sha256": _digest(tensors), "index": json.dumps(index)}
    _save_safetensors(path, tensors, metadata)


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path`` (None when there is none); CheckpointError when it is damaged."""
    if not path.exists():
        return None
    metadata, tensors = _read_safetensors(path)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this tool (format {metadata.get('format')!r}, "
                              f"expected {CHECKPOINT_FORMAT!r}); delete it or use another --out")

    def tensor(name: str) -> torch.Tensor:
        if name not in tensors:
            raise CheckpointError(f"checkpoint {path} is incomplete (tensor {name!r} missing); delete it")
        return tensors[name]

    try:
        p = _unflatten(json.loads(metadata["index"]), tensor)
        state = TrainState(int(p["epoch"]), p["model"], p["optimizer"], p["scheduler"], p["rng"],
                           float(p["best_val_acc"]), int(p["best_epoch"]), list(p["history"]), p.get("scaler"))
        identity = dict(p["identity"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} has a malformed index ({err!r}); delete it") from None
    return Checkpoint(state, identity)


def load_trained(out_dir: str | Path) -> GraphModule:
    """The network a finished retraining in ``out_dir`` produced (graph.json + weights.safetensors), in
    eval mode; ValueError (one line) when a file is missing, damaged or of another architecture."""
    out = Path(out_dir)
    graph = load_graph_file(out / GRAPH)
    model = GraphModule(graph)
    load_into(model, load_weights(out / WEIGHTS, arch_hash=graph.canonical_hash()))
    return model.eval()


# ----------------------------------------------------------------------------------------------
# the architecture: a graph file or a run's trial


def load_graph_file(path: str | Path) -> ArchGraph:
    """An ArchGraph JSON file (``nas model --json-out``, ``nas space --json-out``), validated."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"graph file {path} does not exist; pass a JSON file written by "
                         "`nas model --json-out` or `nas space --json-out`")
    graph = ArchGraph.from_json(path.read_text())
    graph.validate()
    return graph


def trial_graph(view: RunView, record: TrialRecord, data: TensorDataset, same_data: bool = True) -> ArchGraph:
    """The graph of a run's trial for ``data``: the one the search stored when ``data`` is the run's
    dataset or the run's space is a user's, else its architecture rebuilt by the run's built-in space
    for ``data``'s input shape and classes. With ``same_data`` a rebuilt graph must have the
    journal's canonical hash."""
    stored = graph_path(view.run_dir, record.hash).is_file()
    if same_data and stored:
        return view.graph(record.trial)
    space = view.builtin_space()
    if space is None:  # a user's space: its graph is the one stored (the trainer checks it fits the data)
        return view.graph(record.trial)
    options = {k: v for k, v in view.config.get("space_options", {}).items() if k not in ("input_shape", "num_classes")}
    rebuilt = make_space(space.name, input_shape=data.input_shape, num_classes=data.num_classes, **options)
    graph = rebuilt.to_graph(rebuilt.from_json(record.arch))
    if same_data and not view.is_benchmark and graph.canonical_hash() != record.hash:
        raise InputError(f"trial {record.trial}'s architecture rebuilds to a different graph than the search "
                         f"trained (hash {graph.canonical_hash()[:16]} vs {record.hash[:16]}): the search space's "
                         "code changed since; export the graph with a matching version instead")
    return graph


# ----------------------------------------------------------------------------------------------
# retraining


def retrain(graph: ArchGraph, data: TensorDataset, out_dir: str | Path, config: TrainConfig, *,
            augment: str = "crop-flip", device: torch.device | str = "cpu",
            data_info: dict[str, Any] | None = None, callback: Callable[[Metrics], None] | None = None,
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train ``graph`` from scratch on ``data`` for ``config.epochs`` epochs, checkpointing into ``out_dir``.

    Resumes from ``out_dir``'s checkpoint when there is one of the same training (architecture
    hash, ``config``, ``augment``, ``data_info`` and the data's shape/size); CheckpointError
    listing the differences otherwise. ``callback(metrics)`` runs after each epoch's checkpoint
    (raising from it interrupts the training resumably); ``log`` receives progress lines.
    Writes weights.safetensors, metrics.json and graph.json; returns the final metrics.
    Raises :class:`nas.trainer.TrialFailed` when the training itself fails (NaN, shape mismatch).
    """
    config.validate()
    transform = make_augment(augment, data.input_shape)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output directory {out} is a file; pass a directory")
    out.mkdir(parents=True, exist_ok=True)
    identity = {"arch_hash": graph.canonical_hash(), "train": config.to_dict(), "augment": augment,
                "data": {**(data_info or {}), "name": data.name, "input_shape": list(data.input_shape),
                         "num_classes": data.num_classes, "train_samples": len(data.train_x),
                         "val_samples": len(data.val_x)}}
    say = log or (lambda _line: None)
    checkpoint = load_checkpoint(out / CHECKPOINT)
    if checkpoint is not None:
        diff = config_diff(checkpoint.identity, identity)
        if diff:
            raise CheckpointError(f"{out} holds a checkpoint of a different training; use another --out or the "
                                  "original arguments. Differences (checkpoint -> now): " + "; ".join(diff))
    atomic_write_json(out / GRAPH, graph.to_dict())
    state = checkpoint.state if checkpoint is not None else None
    if state is not None and state.epoch >= config.epochs:
        say(f"{out}: training already complete ({state.epoch} epochs); rewriting its outputs")
    else:
        if state is not None:
            say(f"resuming from the checkpoint after epoch {state.epoch}/{config.epochs} in {out}")

        def on_epoch_end(ts: TrainState) -> None:
            save_checkpoint(out / CHECKPOINT, ts, identity)

        def report(m: Metrics) -> None:
            say(_progress_line(m, config.epochs))
            if callback is not None:
                callback(m)

        train_and_evaluate(graph, data, config, device, report, transform=transform, on_epoch_end=on_epoch_end,
                           resume=state)
        final = load_checkpoint(out / CHECKPOINT)  # the last epoch's, read back: what was stored is what we publish
        assert final is not None
        state = final.state
    return _finish(out, graph, state, identity)


def _progress_line(m: Metrics, epochs: int) -> str:
    return (f"epoch {int(m['epoch'])}/{epochs}  train loss {m['train_loss']:.4f} acc {m['train_acc']:.4f}  "
            f"val loss {m['val_loss']:.4f} acc {m['val_acc']:.4f}  lr {m['lr']:.4g}  {m['epoch_seconds']:.1f}s")


def _finish(out: Path, graph: ArchGraph, state: TrainState, identity: dict[str, Any]) -> dict[str, Any]:
    """Write weights.safetensors and metrics.json from the final state; returns the final metrics."""
    model = GraphModule(graph)
    model.load_state_dict(state.model)  # also checks that the weights fit the compiled graph
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    last = {k: v for k, v in state.history[-1].items() if k != "epoch_seconds"}
    final = {**last, "best_val_acc": state.best_val_acc, "best_epoch": state.best_epoch, "epochs": state.epoch,
             "params": params, "train_seconds": sum(m.get("epoch_seconds", 0.0) for m in state.history)}
    save_weights(model.state_dict(), out / WEIGHTS, arch_hash=identity["arch_hash"],
                 extra={"graph": graph.to_json(), "epochs": str(state.epoch), "val_acc": repr(final["val_acc"]),
                        "source": "nas train"})
    atomic_write_json(out / METRICS, {"arch_hash": identity["arch_hash"], "graph": graph.name,
                                      "config": identity, "history": state.history, "final": final})
    return final


def summary(final: dict[str, Any], graph: ArchGraph, out_dir: str | Path) -> str:
    """Human summary of a finished retraining (printed by ``nas train``)."""
    out = Path(out_dir)
    return (f"retrained {graph.name or 'graph'} (hash {graph.canonical_hash()[:16]}, {final['params']:,} params) "
            f"for {final['epochs']} epochs: val acc {final['val_acc']:.4f}, val loss {final['val_loss']:.4f}, "
            f"best val acc {final['best_val_acc']:.4f} at epoch {final['best_epoch']}, "
            f"{final['train_seconds']:.1f}s training\n"
            f"wrote {out / WEIGHTS}, {out / METRICS}, {out / GRAPH}")
