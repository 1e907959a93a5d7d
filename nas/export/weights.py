"""Trained weights as safetensors files tied to an architecture.

A weights file is a plain `safetensors <https://github.com/huggingface/safetensors>`_ file (no
pickle: loading never executes code) whose metadata identifies it::

    format     "nas-weights/1"
    arch_hash  canonical hash of the ArchGraph the weights belong to (GraphModule.arch_hash)
    sha256     digest of the metadata and every tensor (name, dtype, shape, bytes): safetensors
               itself has no checksum, so flipped or edited bytes are detected here
    ...        optional caller entries (``extra``: str -> str, e.g. the epoch)

:func:`save_weights` writes atomically (temporary file in the same directory, fsync, rename,
fsync of the directory): a reader sees the old file or the new one, never a partial one.
:func:`load_weights` turns every way a file can be unusable into one :class:`WeightsError`
line; :func:`load_into` checks keys and shapes against a module before loading.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from search_spaces.errors import InputError

FORMAT = "nas-weights/1"
RESERVED_KEYS = ("format", "arch_hash", "sha256")
_LIST_AT_MOST = 8  # keys named per category in a load_into error


class WeightsError(InputError):
    """A weights file or state dict that cannot be used (missing, corrupted, other architecture)."""


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a contiguous CPU tensor of any dtype."""
    flat = tensor.detach().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def _digest(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """sha256 over the metadata (except the digest itself) and each tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for key in sorted(metadata):
        if key != "sha256":
            h.update(f"meta:{len(key)}:{key}={len(metadata[key])}:{metadata[key]}\n".encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"tensor:{len(name)}:{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def _prepare(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies with storages of their own (safetensors refuses shared or
    strided tensors; tied weights are saved once per name)."""
    out = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"state dict keys must be str, got {name!r}")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry {name!r} is a {type(value).__name__}, not a tensor; "
                            "only tensors can be saved")
        out[name] = value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    return out


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_weights(state_dict: Mapping[str, torch.Tensor], path: str | Path, *, arch_hash: str,
                 extra: Mapping[str, str] | None = None) -> Path:
    """Write ``state_dict`` to ``path`` as safetensors, atomically; returns the path.

    Tensors are copied to contiguous CPU tensors first (shared and non-contiguous tensors are
    fine). ``extra`` adds str -> str metadata; it may not use the keys in :data:`RESERVED_KEYS`.
    An existing file at ``path`` is replaced; the parent directory must exist.
    """
    from safetensors.torch import save

    if not isinstance(arch_hash, str) or not arch_hash:
        raise InputError(f"arch_hash must be a non-empty str, got {arch_hash!r}")
    metadata = {"format": FORMAT, "arch_hash": arch_hash}
    for key, value in (extra or {}).items():
        if key in RESERVED_KEYS:
            raise InputError(f"extra metadata may not set the reserved key {key!r}")
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"extra metadata must map str to str, got {key!r}: {value!r}")
        metadata[key] = value
    tensors = _prepare(state_dict)
    metadata["sha256"] = _digest(tensors, metadata)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(_canonical_header(save(tensors, metadata=metadata)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write (full disk, bad tensor) leaves nothing behind
        raise
    _fsync_dir(path.parent)
    return path


def _canonical_header(data: bytes) -> bytes:
    """The same safetensors bytes with the JSON header's keys sorted.

    safetensors writes the metadata in hash-map order, which differs between processes; sorting
    makes equal weights give byte-identical files. The header keeps its length (same keys, same
    compact separators) and its space padding, so the tensor offsets stay valid.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), separators=(",", ":"), sort_keys=True).encode()
    if len(header) > n:  # cannot happen for serde_json's compact output; keep the original then
        return data
    return data[:8] + header + b" " * (n - len(header)) + data[8 + n:]


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file (WeightsError if it is missing or unreadable)."""
    from safetensors import safe_open

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # safetensors raises SafetensorError, OSError, ValueError, ... by case
        raise _unreadable(path, err) from None


def load_weights(path: str | Path, *, arch_hash: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a weights file written by :func:`save_weights` (CPU, by name).

    Raises :class:`WeightsError` with one clear line when the file is missing, truncated or
    corrupted (unparseable, or its checksum does not match), not a ``nas-weights/1`` file, or,
    with ``arch_hash`` given, saved for a different architecture.
    """
    from safetensors import safe_open

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as err:  # safetensors raises SafetensorError, OSError, ValueError, ... by case
        raise _unreadable(path, err) from None
    found = metadata.get("format")
    if found != FORMAT:
        what = "no format metadata" if found is None else f"format {found!r}"
        raise WeightsError(f"{path} is not a nas weights file ({what}; expected {FORMAT!r}); "
                           "write it with nas.export.weights.save_weights")
    if "arch_hash" not in metadata or "sha256" not in metadata:
        raise WeightsError(f"{path} lacks its {'arch_hash' if 'arch_hash' not in metadata else 'sha256'} "
                           "metadata; the file is corrupted or was not written by save_weights")
    if _digest(tensors, metadata) != metadata["sha256"]:
        raise WeightsError(f"{path} is corrupted: its checksum does not match its contents (bytes were "
                           "changed after it was written); re-export or retrain to get a good copy")
    if arch_hash is not None and metadata["arch_hash"] != arch_hash:
        raise WeightsError(f"{path}: weights are for architecture {metadata['arch_hash']}, this graph is "
                           f"{arch_hash}; load the weights of this architecture's trial instead")
    return tensors


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a weights file" if path.is_dir() else "does not exist"
        raise WeightsError(f"no weights file at {path} (it {what})")
    return path


def _unreadable(path: Path, err: Exception) -> WeightsError:
    detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    return WeightsError(f"{path} is not a readable safetensors file (truncated or corrupted?): {detail}")


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_AT_MOST])
    return shown + (f", ... ({len(keys) - _LIST_AT_MOST} more)" if len(keys) > _LIST_AT_MOST else "")


def load_into(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Copy ``state_dict`` into ``module`` (all keys must match, with equal shapes); returns it.

    Raises :class:`WeightsError` listing the missing, unexpected and shape-mismatched keys
    instead of torch's multi-line error. Values are converted to each parameter's dtype and
    device by ``load_state_dict``.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in own
                  if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} key(s): {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} key(s): {_names(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es) (weights vs module): {_names(mismatched)}")
    if problems:
        raise WeightsError(f"the weights do not fit this {type(module).__name__}: " + "; ".join(problems)
                           + " (are they for another architecture?)")
    try:
        module.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as err:  # e.g. a dtype that cannot be copied
        raise WeightsError(f"the weights do not fit this {type(module).__name__}: "
                           f"{str(err).strip().splitlines()[-1][:300]}") from None
    return module
