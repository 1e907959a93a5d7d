"""Deployable programs of a trained module: ONNX (checked with onnxruntime), torch.export and TorchScript.

* :func:`export_onnx` uses torch's ``torch.export``-based ONNX exporter (``dynamo=True``, which
  needs ``onnx`` and ``onnxscript``) with a dynamic batch dimension; :func:`check_onnx` runs the
  file with onnxruntime and compares with the module. Install with ``pip install 'graphnas[onnx]'``.
* :func:`export_pt2` captures the module with ``torch.export.export`` (a dynamic batch dimension),
  saves the program with ``torch.export.save`` (``NAME.pt2``), reloads it with ``torch.export.load``
  and compares it with the module at two batch sizes. ``torch.export`` is TorchScript's successor.
* :func:`export_torchscript` traces the module (``torch.jit.trace``: the compiled graphs run a
  fixed plan, so tracing captures them exactly, attention included) and checks that the saved
  program reloads and matches at another batch size. TorchScript is deprecated in torch 2.x (prefer
  ``pt2``) but still loads from C++ (libtorch) without Python.

Files are written atomically (temporary file in the same directory, fsync, rename). Modules are
exported in eval mode (BatchNorm running statistics, no dropout); their train/eval mode is
restored afterwards. A module with several inputs or outputs is not supported: ours map one
tensor (B, *input_shape) to one tensor.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from search_spaces.errors import InputError

ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
INSTALL_HINT = "pip install 'graphnas[onnx]'"
_TRACE_BATCH = 2  # example batch for tracing/export (1 could be specialised as a constant)
_CHECK_BATCH = 3  # a different batch for the checks, so a baked-in batch size is caught


class ExportError(InputError, RuntimeError):
    """An export failed or its program does not reproduce the module (the message says which and why;
    the CLI reports it as one line)."""


class MissingDependencyError(InputError, ImportError):
    """An optional package needed for an export format is not installed (the message names the extra)."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


def require_onnx() -> tuple[ModuleType, ModuleType]:
    """``(onnx, onnxruntime)``; MissingDependencyError naming the missing package and the extra."""
    modules = []
    for name in ONNX_PACKAGES:
        try:
            modules.append(__import__(name))
        except ImportError as err:
            raise MissingDependencyError(
                f"ONNX export needs the packages {', '.join(ONNX_PACKAGES)}; {name!r} is not installed "
                f"({err}). Install them with: {INSTALL_HINT}", name=name) from None
    return modules[0], modules[1]


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch's exporter chatter (deprecation notices of its internals, registry warnings)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the checks catch a bad trace
            yield
    finally:
        logger.setLevel(level)


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def _example(module: nn.Module, input_shape: Sequence[int], batch: int, seed: int) -> torch.Tensor:
    """A reproducible N(0, 1) input (batch, *input_shape) on the module's device (global RNG untouched)."""
    x = torch.randn(batch, *(int(d) for d in input_shape), generator=torch.Generator().manual_seed(seed))
    return x.to(_device_of(module))


def _write_atomic(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` for a temporary path beside ``path``, fsync it and rename it to ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the directory {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _compare(name: str, got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> None:
    if tuple(got.shape) != tuple(want.shape):
        raise ExportError(f"{name} output shape {tuple(got.shape)} differs from the module's {tuple(want.shape)}")
    if not torch.allclose(got, want, atol=atol, rtol=rtol):
        worst = (got - want).abs().max().item()
        raise ExportError(f"{name} output differs from the module's: max abs difference {worst:.3g} "
                          f"(atol {atol:g}, rtol {rtol:g})")


# ----------------------------------------------------------------------------- ONNX
def export_onnx(module: nn.Module, input_shape: Sequence[int], path: str | Path, *,
                opset: int | None = None, dynamic_batch: bool = True) -> Path:
    """Write ``module`` (eval mode) as an ONNX model to ``path``; returns the path.

    Input ``"x"`` (B, *input_shape) float32 -> output (B, ...); the batch dimension B is dynamic
    (``dynamic_batch=False``, or a module whose export cannot keep it symbolic, fixes it at 1:
    a warning says so). ``opset``: the ONNX opset (None: the exporter's default). The model is
    one self-contained file (no external data), so it must stay under protobuf's 2 GB.
    Raises MissingDependencyError without onnx, onnxruntime or onnxscript, ExportError when torch
    cannot export.
    """
    require_onnx()
    with _eval_mode(module), _quiet():
        if dynamic_batch:
            try:
                dynamic: list[bool] = []
                out = _write_atomic(path, lambda tmp: dynamic.append(
                    _onnx_export(module, input_shape, tmp, opset, True)))
                if dynamic[0]:
                    return out
                reason = "the exporter specialised it: the module's code depends on the batch size"
            except (OSError, MissingDependencyError):
                raise
            except Exception as err:  # torch.export could not keep the batch symbolic
                reason = _first_line(err)
            warnings.warn(f"ONNX export with a dynamic batch failed ({reason}); exporting with batch size 1 "
                          "instead", RuntimeWarning, stacklevel=2)
        try:
            return _write_atomic(path, lambda tmp: _onnx_export(module, input_shape, tmp, opset, False))
        except (OSError, MissingDependencyError):
            raise
        except Exception as err:
            raise ExportError(f"torch could not export {type(module).__name__} to ONNX: {_first_line(err)}") \
                from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300]}" if text else type(err).__name__


def _onnx_export(module: nn.Module, input_shape: Sequence[int], path: Path, opset: int | None,
                 dynamic: bool) -> bool:
    """Export to ``path``; True when the model's batch dimension is symbolic."""
    x = _example(module, input_shape, _TRACE_BATCH if dynamic else 1, seed=0)
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    program = torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["x"], output_names=["y"],
                                opset_version=opset, dynamic_shapes=dynamic_shapes, external_data=False,
                                verbose=False)
    inputs = program.model.graph.inputs if program is not None else []
    return bool(inputs) and inputs[0].shape is not None and not isinstance(inputs[0].shape[0], int)


def check_onnx(path: str | Path, module: nn.Module, input_shape: Sequence[int], atol: float = 1e-5,
               rtol: float = 1e-4, seed: int = 0) -> float:
    """Run the ONNX model at ``path`` with onnxruntime (CPU) on a random input and compare with
    ``module`` (eval mode); returns the max abs difference, raises ExportError on a mismatch.

    The check uses a batch of 3 when the model's batch dimension is dynamic (else its fixed batch),
    so a batch size baked in by the export is caught. ``onnx.checker`` validates the file first.
    """
    onnx, ort = require_onnx()
    path = Path(path)
    try:
        onnx.checker.check_model(str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ExportError(f"{path} is not a valid ONNX model for onnxruntime: {_first_line(err)}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ExportError(f"{path} has {len(inputs)} inputs; expected one")
    batch = inputs[0].shape[0] if isinstance(inputs[0].shape[0], int) else _CHECK_BATCH
    with _eval_mode(module):
        x = _example(module, input_shape, batch, seed=seed + 1)
        want = module(x).float().cpu()
    got = torch.from_numpy(session.run(None, {inputs[0].name: x.cpu().numpy()})[0])
    _compare(f"ONNX model {path.name}", got, want, atol, rtol)
    return (got - want).abs().max().item() if got.numel() else 0.0


# ----------------------------------------------------------------------------- torch.export
def export_pt2(module: nn.Module, input_shape: Sequence[int], path: str | Path, *, atol: float = 1e-5,
               rtol: float = 1e-4) -> Path:
    """Capture ``module`` (eval mode) with ``torch.export.export`` and save the program to ``path``.

    Input (B, *input_shape) with a dynamic batch dimension B. The saved file is reloaded with
    ``torch.export.load`` and its module compared with ``module`` at batch sizes 1 and 3, so a batch
    size baked in by the export is caught. Returns the path; ExportError when torch.export cannot keep
    the batch dynamic (the module's code depends on it) or the reloaded program differs.
    """
    with _eval_mode(module), _quiet():
        x = _example(module, input_shape, _TRACE_BATCH, seed=0)
        try:
            program = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        except Exception as err:
            raise ExportError(f"torch.export could not capture {type(module).__name__} with a dynamic batch "
                              f"dimension: {_first_line(err)}") from err
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        path = _write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
        try:
            loaded = torch.export.load(str(path)).module()
        except Exception as err:
            raise ExportError(f"the saved torch.export program {path} does not load: {_first_line(err)}") from None
        for batch, seed in ((1, 1), (_CHECK_BATCH, 2)):
            check = _example(module, input_shape, batch, seed)
            _compare(f"torch.export program {path.name} at batch {batch}", loaded(check).float().cpu(),
                     module(check).float().cpu(), atol, rtol)
    return path


# ----------------------------------------------------------------------------- TorchScript
def export_torchscript(module: nn.Module, input_shape: Sequence[int], path: str | Path, *,
                       atol: float = 1e-5, rtol: float = 1e-4) -> Path:
    """Trace ``module`` (eval mode) and save the TorchScript program to ``path``; returns the path.

    The saved file is reloaded with ``torch.jit.load`` and compared with the module on a random
    input of another batch size (the batch stays dynamic: shapes are read from the input at run
    time); ExportError when tracing fails or the reloaded program differs.
    """
    with _eval_mode(module), _quiet():
        x = _example(module, input_shape, _TRACE_BATCH, seed=0)
        try:
            traced = torch.jit.trace(module, (x,), check_trace=False)
        except Exception as err:
            raise ExportError(f"torch.jit.trace could not trace {type(module).__name__}: {_first_line(err)}") \
                from err
        path = _write_atomic(path, lambda tmp: torch.jit.save(traced, str(tmp)))
        try:
            loaded = torch.jit.load(str(path), map_location=x.device)
        except Exception as err:
            raise ExportError(f"the saved TorchScript program {path} does not load: {_first_line(err)}") from None
        check = _example(module, input_shape, _CHECK_BATCH, seed=1)
        _compare(f"TorchScript program {Path(path).name}", loaded(check).float().cpu(),
                 module(check).float().cpu(), atol, rtol)
    return path
