"""How a multi-trial search evaluates one architecture: the built-in trainer, or a user's function.

The contract (:class:`Evaluator`): ``evaluate(graph, trial)`` runs inside the Ray trial, on the
trial's resources (``trial.device``), and returns the trial's metrics (a mapping of floats, or
one float). It may call ``trial.report(epoch=..., **metrics)`` after each epoch: the report
feeds early stopping (ASHA) and the run's progress, and a scheduler may end the trial at any
report. The search's objective (:class:`nas.objective.Objective`) scores the metrics: its
``metric`` names the one to maximise (a returned float is that metric). Raising
:class:`nas.trainer.TrialFailed` (or anything else) fails the trial with a reason; the search
goes on.

* :class:`Trainer`: the built-in trainer (:func:`nas.trainer.train_and_evaluate`) on a built-in
  dataset, loaded once in the driver (``prepare``) as raw pixels (uint8 where exact, normalised on
  the trial's device) and put in Ray's object store once (``for_trials``): one copy per node, read
  without copying by every trial there.
* :class:`FunctionEvaluator`: ``evaluate(model, trial)`` written by the user: it gets the compiled
  ``torch.nn.Module`` (on ``trial.device``, seeded) and does its own data loading and training;
  the model's weights are saved with every report and at the end, so ``nas export`` finds them.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

import torch

from nas.config import DataConfig
from nas.datasets import load_dataset
from nas.tensor_dataset import SharedDataset, TensorDataset
from nas.trainer import TrainConfig, measure_latency_ms, train_and_evaluate
from nas.trial import Trial
from search_spaces.compiler import GraphModule
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph

Metrics = Mapping[str, float]
DOWNLOADABLE = ("cifar10", "mnist", "fashion_mnist")
LATENCY_REPEATS = 20


class Evaluator(ABC):
    """Evaluates one architecture inside its trial (see the module docstring for the contract)."""

    #: the evaluator's name in the run's configuration
    name: str = ""

    def prepare(self, download: bool = False) -> None:
        """Driver-side set-up before any trial (e.g. load the data once); default: nothing."""

    def for_trials(self) -> Evaluator:
        """What is sent to the trials' workers (called once in the driver, with Ray running); default:
        the evaluator itself."""
        return self

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Sample shape of the data, when the evaluator knows it (sizes a built-in space)."""
        return None

    @property
    def num_classes(self) -> int | None:
        return None

    @abstractmethod
    def evaluate(self, graph: ArchGraph, trial: Trial) -> Metrics | float:
        """The metrics of ``graph`` (runs in the trial's worker)."""


class Trainer(Evaluator):
    """The built-in trainer on a built-in dataset (``digits``, ``cifar10``, ``mnist``, ...).

    Keyword arguments are :class:`~nas.config.DataConfig` fields (``dataset``, ``data_root``,
    ``val_fraction``, ``limit``) and :class:`~nas.trainer.TrainConfig` fields (``epochs``,
    ``batch_size``, ``lr``, ...); unknown ones are refused. ``Trainer(dataset="cifar10",
    data_root="~/data", epochs=20)``.
    """

    name = "trainer"

    def __init__(self, **options: Any) -> None:
        data_keys = {f.name for f in fields(DataConfig)}
        train_keys = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(options) - data_keys - train_keys)
        if unknown:
            raise InputError(f"Trainer: unknown option(s) {unknown}; data options are {sorted(data_keys)}, training "
                             f"options {sorted(train_keys)}")
        self.data_options = {k: v for k, v in options.items() if k in data_keys}
        self.train_options = {k: v for k, v in options.items() if k in train_keys}
        self.data_config: DataConfig | None = None
        self.train_config: TrainConfig | None = None
        self.data: TensorDataset | None = None
        self.shared: SharedDataset | None = None  # the data in Ray's object store (what trials get)

    def configure(self, data: DataConfig, train: TrainConfig | None) -> Trainer:
        """Bind the resolved data and training configuration (done by the engine; ``train`` None: the
        data only, for a one-shot method that trains by itself)."""
        self.data_config, self.train_config = data, train
        return self

    def prepare(self, download: bool = False) -> None:
        if self.data is not None:
            return
        if self.data_config is None:
            raise InputError("Trainer.prepare: no data configuration bound (the engine binds it)")
        d = self.data_config
        extra = {"download": True} if download and d.dataset in DOWNLOADABLE else {}
        self.data = load_dataset(d.dataset, d.data_root, val_fraction=d.val_fraction, limit=d.limit, compact=True,
                                 **extra)

    def for_trials(self) -> Trainer:
        """A copy that holds the dataset as a :class:`~nas.tensor_dataset.SharedDataset` (put in Ray's
        object store now, once) instead of the tensors."""
        if self.data is None:
            raise InputError("Trainer.for_trials before prepare(): the engine loads the data first")
        shipped = copy.copy(self)
        shipped.data, shipped.shared = None, SharedDataset.put(self.data)
        return shipped

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        known = self.data or self.shared
        return None if known is None else tuple(known.input_shape)

    @property
    def num_classes(self) -> int | None:
        known = self.data or self.shared
        return None if known is None else known.num_classes

    def trial_data(self) -> TensorDataset:
        """The dataset in the trial: the node's shared copy (zero-copy), or the driver's own."""
        if self.shared is not None:
            return self.shared.get()
        if self.data is None:
            raise InputError("Trainer.evaluate before prepare(): the engine loads the data first")
        return self.data

    def evaluate(self, graph: ArchGraph, trial: Trial) -> Metrics:
        data = self.trial_data()
        if self.train_config is None:
            raise InputError("Trainer.evaluate without a training configuration (the engine binds it)")
        resume = trial.resume if trial.resume is not None and 1 <= trial.resume.epoch < self.train_config.epochs \
            else None  # a trial that runs again continues after its last checkpointed epoch
        return train_and_evaluate(graph, data, self.train_config, trial.device, trial.report_epoch,
                                  latency_repeats=LATENCY_REPEATS if trial.needs_latency else 0,
                                  on_epoch_end=trial.save_state, resume=resume)


class FunctionEvaluator(Evaluator):
    """A user's ``evaluate(model: torch.nn.Module, trial) -> float | Mapping[str, float]``."""

    def __init__(self, fn: Callable[[torch.nn.Module, Trial], Metrics | float]) -> None:
        if not callable(fn):
            raise InputError(f"an evaluator must be callable as evaluate(model, trial), got {fn!r}")
        self.fn = fn
        self.name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"

    def evaluate(self, graph: ArchGraph, trial: Trial) -> Metrics | float:
        model = GraphModule(graph, seed=trial.seed)
        if trial.needs_latency:
            trial.latency_ms = measure_latency_ms(model, model.input_shape, trial.device, LATENCY_REPEATS)
        trial.model = model.to(trial.device)
        out = self.fn(trial.model, trial)
        if not isinstance(out, (Mapping, int, float)) or isinstance(out, bool):
            raise InputError(f"evaluator {self.name} returned {type(out).__name__}; return a float or a mapping "
                             "of metric names to floats")
        metrics = trial.metrics_of(out)
        return {str(k): float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def as_evaluator(evaluator: Evaluator | Callable[..., Any]) -> Evaluator:
    """An :class:`Evaluator` for what a user passed: one already, or a function ``evaluate(model, trial)``."""
    return evaluator if isinstance(evaluator, Evaluator) else FunctionEvaluator(evaluator)
