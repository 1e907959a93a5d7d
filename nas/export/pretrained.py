"""The input an exported model's weights expect: the normalisation written into its ``PRETRAINED_CFG``.

An input image x of raw pixel values goes into the model as ``(x / max_pixel_value - mean[c]) / std[c]``
per channel c, as :mod:`nas.datasets` prepares it (the mean and standard deviation of the training
split, after scaling to [0, 1]). Where the numbers come from:

* a trial of a run: what the search recorded in ``data.json`` (runs from before it: the run's dataset
  from ``config.json``, loaded once with the run's split to read the statistics; :func:`of_run_data`);
* a NAS-Bench-201 cell: CIFAR-10 as the benchmark trained it (AutoDL-Projects' mean / std);
* a reference network: ImageNet's mean / std (the networks' published training data) for 3 input
  channels, else none;
* anything else (a graph file, untrained): none, i.e. mean 0, std 1, max_pixel_value 1 (the model sees
  the input as given).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nas.datasets import DatasetError, load_dataset
from nas.rundir import RunView
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph


@dataclass(frozen=True)
class Normalisation:
    """Per-channel ``mean`` / ``std`` after dividing raw pixels by ``max_pixel_value``; ``dataset`` names
    where they come from (None: no data, the identity)."""

    dataset: str | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_pixel_value: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalisation:
        try:
            return cls(data["dataset"], tuple(float(m) for m in data["mean"]), tuple(float(s) for s in data["std"]),
                       float(data["max_pixel_value"]))
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"malformed normalisation {data!r} ({err!r}); expected dataset, mean, std and "
                             "max_pixel_value") from None


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# AutoDL-Projects (NAS-Bench-201's training code), CIFAR-10: mean / std of the 0..255 pixels
CIFAR10_MEAN = tuple(x / 255 for x in (125.3, 123.0, 113.9))
CIFAR10_STD = tuple(x / 255 for x in (63.0, 62.1, 66.7))


def identity(channels: int) -> Normalisation:
    """No data: the model sees its input as given."""
    return Normalisation(None, (0.0,) * channels, (1.0,) * channels)


def imagenet(channels: int) -> Normalisation:
    """The reference networks' published training data (ImageNet, 0..255 pixels) for 3 channels."""
    if channels != 3:
        return identity(channels)
    return Normalisation("imagenet", IMAGENET_MEAN, IMAGENET_STD, 255.0)


def nb201_cifar10(channels: int) -> Normalisation:
    """CIFAR-10 as NAS-Bench-201 trained its cells (AutoDL-Projects' statistics)."""
    if channels != 3:
        return identity(channels)
    return Normalisation("cifar10", CIFAR10_MEAN, CIFAR10_STD, 255.0)


def of_run_data(settings: dict[str, Any] | None, channels: int) -> Normalisation:
    """The normalisation the trials of a run saw: its dataset (``RunView.data_settings()``) loaded with
    the run's split. A run without a built-in dataset (a benchmark, a user's evaluator) gives the
    identity; a dataset that is not readable here raises InputError saying what to do."""
    if not settings or not settings.get("dataset"):
        return identity(channels)
    name = settings["dataset"]
    options = {k: settings[k] for k in ("val_fraction", "limit") if settings.get(k) is not None}
    try:
        data = load_dataset(name, settings.get("data_root"), **options)
    except DatasetError as err:
        raise InputError(f"the export records the input normalisation of the run's dataset {name!r}, which "
                         f"cannot be read here: {err}; export where the run's data (config.json: data) is "
                         "readable") from None
    if len(data.mean) != channels:
        return identity(channels)
    return Normalisation(name, data.mean, data.std, data.max_pixel_value)


def for_export(graph: ArchGraph, run: str | None = None, model: str | None = None,
               nb201: bool = False) -> Normalisation:
    """The normalisation of an architecture exported from a run directory, a reference model (by name) or a
    NAS-Bench-201 index; anything else (a graph file) gets none."""
    shape = graph.validate()[graph.input]
    channels = shape.channels if shape.kind == "map" else 1
    if run is not None:
        view = RunView(run)
        stats = view.data_stats()
        if stats is not None:
            recorded = Normalisation.from_dict(stats)
            return recorded if len(recorded.mean) == channels else identity(channels)
        return of_run_data(view.data_settings(), channels)
    if model is not None:
        return imagenet(channels)
    return nb201_cifar10(channels) if nb201 else identity(channels)
