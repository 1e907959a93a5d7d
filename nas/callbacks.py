"""Ray Tune logger callbacks by name, for ``nas search --logger NAME`` (Python: pass callback objects).

Tune itself already writes ``progress.csv`` and ``result.json`` in every trial directory
(``RUN/tune/trials/trial_N/``), and TensorBoard event files there when ``tensorboardX`` is
installed (``tensorboard --logdir RUN/tune/trials``). The names below add a logger explicitly;
MLflow and Weights & Biases need their own packages (``pip install mlflow`` / ``wandb``) and are
configured by their usual environment variables (``MLFLOW_TRACKING_URI``, ``WANDB_API_KEY``, ...).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from typing import Any

from search_spaces.errors import InputError

# name -> (module, class, the package it needs)
LOGGERS: dict[str, tuple[str, str, str | None]] = {
    "csv": ("ray.tune.logger", "CSVLoggerCallback", None),
    "json": ("ray.tune.logger", "JsonLoggerCallback", None),
    "tensorboard": ("ray.tune.logger", "TBXLoggerCallback", "tensorboardX"),
    "mlflow": ("ray.air.integrations.mlflow", "MLflowLoggerCallback", "mlflow"),
    "wandb": ("ray.air.integrations.wandb", "WandbLoggerCallback", "wandb"),
}


def logger_callbacks(names: Sequence[str]) -> list[Any]:
    """One Tune callback per name (see :data:`LOGGERS`); InputError for an unknown name or a missing package."""
    out = []
    for name in names:
        if name not in LOGGERS:
            raise InputError(f"unknown logger {name!r}; choose from {sorted(LOGGERS)}")
        module, cls, needs = LOGGERS[name]
        if needs is not None and importlib.util.find_spec(needs) is None:
            raise InputError(f"logger {name!r} needs the {needs} package: pip install {needs}")
        out.append(getattr(importlib.import_module(module), cls)())
    return out
