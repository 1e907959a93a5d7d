"""Registry of the reference architectures: ``create_model(name, **kwargs) -> ArchGraph``.

Model files register their public builders with :func:`register_model` (as in timm); every
builder takes plain keyword arguments (``num_classes``, ``in_chans``, ``img_size``, and
widths/depths where natural) and returns a validated-shape :class:`ArchGraph` whose ``name``
is the model name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph

ModelFn = Callable[..., ArchGraph]

_MODELS: dict[str, ModelFn] = {}


def register_model(fn: ModelFn) -> ModelFn:
    """Decorator: register ``fn`` under its function name (which must be new)."""
    name = fn.__name__
    if name in _MODELS:
        raise InputError(f"reference model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered reference models, sorted."""
    return sorted(_MODELS)


def create_model(name: str, **kwargs: Any) -> ArchGraph:
    """Build reference model ``name`` (keyword arguments go to its builder)."""
    try:
        fn = _MODELS[name]
    except KeyError:
        raise InputError(f"unknown reference model {name!r}; known models: {', '.join(list_models())}") from None
    return fn(**kwargs)


def start_graph(name: str, in_chans: int, img_size: int) -> tuple[ArchGraph, str]:
    """New graph named ``name`` with an input node of shape (in_chans, img_size, img_size)."""
    if img_size < 1 or in_chans < 1:
        raise InputError(f"in_chans and img_size must be positive, got {in_chans} and {img_size}")
    g = ArchGraph(name)
    x = g.add("input", "input", block="stem:stem", shape=[in_chans, img_size, img_size])
    return g, x


def finish_graph(g: ArchGraph) -> ArchGraph:
    """Validate shapes (raising a typed ArchGraphError naming the node) and return ``g``."""
    g.validate()
    return g
