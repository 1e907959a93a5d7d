"""One typed, fully resolved configuration of a search, built once.

:func:`resolve_config` turns what a user gave (CLI flags, a config file, Python arguments: a
partial mapping with the layout of :meth:`SearchConfig.to_dict`) into a :class:`SearchConfig` in
which every value that changes results is explicit: the strategy's options with all of its
constructor defaults, the full :class:`~nas.trainer.TrainConfig`, the data split, the objective.
``config.json`` of a run stores exactly ``to_dict()`` (with :data:`SCHEMA_VERSION`), so changing
a default in code can never silently change a resumed run, and ``resolve_config(stored)`` gives
the same configuration back (the stored file is a valid ``nas search --config`` input). Passing a
default explicitly is no change.

How trials run (cluster address, resources per trial, concurrency) is not part of it: that is
:class:`Execution`, which may differ between a run and its resumption.

Config files (:func:`load_config_file`): JSON, TOML (``.toml``) or YAML (``.yaml``/``.yml``,
needs PyYAML), holding a mapping in the same layout, e.g.::

    strategy = "evolution"
    trials = 40
    [strategy_options]
    population_size = 20
    [train]
    epochs = 5
"""

from __future__ import annotations

import inspect
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nas.methods.registry import ONE_SHOT, method_names
from nas.objective import COST_METRICS, Objective
from nas.strategies import MULTI_OBJECTIVE, STRATEGIES
from nas.trainer import REPORTED_METRICS, TrainConfig
from search_spaces.errors import InputError
from search_spaces.spaces import SPACES

SCHEMA_VERSION = 2
SCHEDULERS: tuple[str, ...] = ("fifo", "asha")
BENCHMARKS: tuple[str, ...] = ("nb201",)
# the built-in trainer's defaults for search trials: short trainings (nas train retrains for longer)
SEARCH_TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 3, "batch_size": 64, "lr": 0.05, "weight_decay": 5e-4}
BUILTIN_EVALUATORS: tuple[str, ...] = ("trainer", "benchmark")


class ConfigError(InputError):
    """A configuration value is bad: the message names the field and the allowed values."""


@dataclass(frozen=True)
class DataConfig:
    """A built-in dataset and its split (see :func:`nas.datasets.load_dataset`)."""

    dataset: str = "digits"
    data_root: str | None = None
    val_fraction: float = 0.2
    limit: int | None = None


@dataclass(frozen=True)
class Execution:
    """Where and how trials run; never stored, free to change when a run resumes."""

    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    num_cpus: int | None = None
    download: bool = False
    max_retries: int = 2  # runs of a trial again after its worker or node died
    trial_timeout: float | None = None  # seconds before a still-running trial is ended as failed
    storage: str | None = None  # where Tune keeps trial checkpoints: a shared path or cloud URI (default RUN/tune)

    def __post_init__(self) -> None:
        for name in ("cpus_per_trial", "gpus_per_trial"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
        if self.cpus_per_trial == 0 and self.gpus_per_trial == 0:
            raise ConfigError("a trial needs some resources: cpus_per_trial or gpus_per_trial must be > 0")
        for name in ("max_concurrent", "num_cpus"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise ConfigError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        timeout = self.trial_timeout
        if timeout is not None and not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise ConfigError(f"trial_timeout must be a number of seconds > 0 or None, got {timeout!r}")


LOCAL = Execution()  # an embedded local Ray, one CPU per trial


@dataclass(frozen=True)
class SearchConfig:
    """A search, fully resolved (see the module docstring). Build it with :func:`resolve_config`.

    ``evaluator``: ``"trainer"`` (the built-in trainer on ``data`` with ``train``), ``"benchmark"``
    (table lookups, ``benchmark``/``table``/``time_budget``), or the qualified name of a user's
    evaluator (``data`` and ``train`` are then None: the evaluator brings its own). ``space``: a
    built-in space name or the qualified class name of a user's space. ``table``: the NAS-Bench-201
    CSV (benchmark mode; one-shot searches on nb201 look their derived cell up in it).
    """

    strategy: str
    strategy_options: dict[str, Any]
    seed: int
    trials: int
    space: str
    space_options: dict[str, Any]
    evaluator: str
    data: DataConfig | None
    train: TrainConfig | None
    objective: Objective
    scheduler: str = "fifo"
    benchmark: str | None = None
    table: str | None = None
    time_budget: float | None = None
    schema: int = SCHEMA_VERSION
    extras: dict[str, Any] = field(default_factory=dict)  # a user object's description (class names)

    @property
    def one_shot(self) -> bool:
        return self.strategy in ONE_SHOT

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (what ``config.json`` holds)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["data"] = None if self.data is None else asdict(self.data)
        out["train"] = None if self.train is None else self.train.to_dict()
        out["objective"] = self.objective.to_dict()
        return json.loads(json.dumps(out))  # plain data, tuples as lists

    def default_run_dir(self) -> Path:
        data = self.benchmark or (self.data.dataset if self.data is not None else self.evaluator.rsplit(".", 1)[-1])
        space = self.space.rsplit(".", 1)[-1]
        return Path("runs") / f"{self.strategy.rsplit('.', 1)[-1]}-{space}-{data}-seed{self.seed}"


# ---------------------------------------------------------------------------------------------- resolution
TOP_KEYS = {f.name for f in fields(SearchConfig)}


def resolve_config(given: Mapping[str, Any], *, strategy_class: type | None = None,
                   space_class: type | None = None) -> SearchConfig:
    """The fully resolved configuration for the values in ``given`` (missing ones take defaults).

    ``given`` has the layout of :meth:`SearchConfig.to_dict`; any key may be missing. Nested
    ``train``/``data``/``objective`` may be partial. ``strategy_class`` / ``space_class``: a
    user's own Strategy / SearchSpace class (given as an instance to :class:`nas.Experiment`):
    its qualified name is recorded, and its constructor defaults are not resolved (the instance
    is already built). Raises :class:`ConfigError` naming the first bad value.
    """
    if not isinstance(given, Mapping):
        raise ConfigError(f"a configuration must be a mapping of settings, got {type(given).__name__}")
    unknown = sorted(set(given) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown configuration key(s) {unknown}; known keys are {sorted(TOP_KEYS)}")
    schema = given.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise ConfigError(f"configuration schema {schema!r} is not supported (this version reads schema "
                          f"{SCHEMA_VERSION}); the run was made by another version of nas")
    benchmark = given.get("benchmark")
    if benchmark is not None and benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {benchmark!r}; the only one is {BENCHMARKS[0]!r}")
    strategy = given.get("strategy", "evolution")
    seed = _int("seed", given.get("seed", 0), 0)
    extras = dict(given.get("extras") or {})
    one_shot = ONE_SHOT.get(strategy)
    if strategy_class is not None:
        extras["strategy_class"] = _qualname(strategy_class)
    elif strategy not in STRATEGIES and one_shot is None:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {method_names()}")

    evaluator = given.get("evaluator", "benchmark" if benchmark else "trainer")
    if not isinstance(evaluator, str) or not evaluator:
        raise ConfigError(f"evaluator must be a name, got {evaluator!r}")
    if benchmark and one_shot is not None:
        raise ConfigError(f"strategy {strategy!r} trains a supernet on data, it does not query a table: search "
                          "the nb201 space on a dataset and pass the table (without benchmark mode) to look the "
                          "derived cell up in NAS-Bench-201")
    if benchmark and evaluator != "benchmark":
        raise ConfigError("benchmark mode evaluates by table lookup: it takes no evaluator")
    if evaluator == "benchmark" and not benchmark:
        raise ConfigError("evaluator 'benchmark' needs benchmark='nb201' and a table")

    default_space = "nb201" if benchmark else (one_shot.default_space if one_shot is not None else "macro")
    space = given.get("space") or default_space
    if space_class is not None:
        space = given.get("space") or _qualname(space_class)
        extras["space_class"] = _qualname(space_class)
    elif space not in SPACES:
        raise ConfigError(f"unknown search space {space!r}; choose one of {sorted(SPACES)}, or pass your own "
                          "SearchSpace instance (Python)")
    space_options = _mapping("space_options", given.get("space_options") or {})

    default_trials = 100_000 if benchmark else (one_shot.default_trials if one_shot is not None else 20)
    trials = _int("trials", given.get("trials", default_trials), 1)

    train_given = _mapping("train", given.get("train") or {})
    data_given = given.get("data")
    if evaluator == "trainer":
        data = _data_config(data_given)
    elif data_given is not None and one_shot is None:
        raise ConfigError(f"data settings apply to the built-in trainer only; evaluator {evaluator!r} loads its own")
    else:
        data = None if data_given is None else _data_config(data_given)

    options = _mapping("strategy_options", given.get("strategy_options") or {})
    train: TrainConfig | None
    if one_shot is not None:
        if data is None:
            raise ConfigError(f"strategy {strategy!r} trains a supernet on a built-in dataset: use the built-in "
                              "trainer (evaluator 'trainer', e.g. nas.Trainer(dataset=...))")
        # a one-shot method owns its training: the train settings given override its own defaults
        options = one_shot.resolve_options(options, train_given, seed)
        train = None
    else:
        if strategy_class is None:
            options = _strategy_options(strategy, options)
        train = _train_config(train_given, seed) if evaluator == "trainer" else None
        if train is None and train_given and evaluator != "benchmark":
            raise ConfigError(f"train settings apply to the built-in trainer only; evaluator {evaluator!r} trains "
                              "by itself")

    objective = _objective(given.get("objective") or {})
    _check_objectives(objective, evaluator, one_shot is not None, strategy, strategy_class)
    if benchmark and (objective.has_limits or objective.has_penalties):
        raise ConfigError("benchmark mode looks results up in the table: hard limits and penalties do not apply there; "
                          "make a cost an objective instead (e.g. --objectives valid_acc_12ep,params_m)")
    scheduler = given.get("scheduler", "fifo")
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {scheduler!r}; choose one of {SCHEDULERS}")
    if scheduler != "fifo" and objective.multi:
        raise ConfigError(f"scheduler {scheduler!r} ranks trials by one score and would stop the front's cheaper, "
                          "less accurate trade-offs early; a multi-objective search needs the fifo scheduler")
    if scheduler != "fifo" and (one_shot is not None or benchmark):
        raise ConfigError(f"scheduler {scheduler!r} stops multi-trial searches' trials early; it does not apply "
                          f"to {'benchmark mode' if benchmark else 'strategy ' + repr(strategy)}")
    table = given.get("table")
    if table is not None:
        table = str(Path(table).expanduser().resolve())
    time_budget = None
    if benchmark:
        if space != "nb201":
            raise ConfigError("benchmark nb201 searches the nb201 space; pass space 'nb201' (or leave it out)")
        if not table:
            raise ConfigError("benchmark nb201 needs the NAS-Bench-201 CSV: pass --table PATH")
        time_budget = given.get("time_budget", 12_000.0)
        if not (isinstance(time_budget, (int, float)) and math.isfinite(time_budget) and time_budget > 0):
            raise ConfigError(f"time_budget must be > 0 simulated seconds, got {time_budget!r}")
        time_budget = float(time_budget)
    return SearchConfig(strategy=strategy, strategy_options=options, seed=seed, trials=trials, space=space,
                        space_options=space_options, evaluator=evaluator, data=data, train=train, objective=objective,
                        scheduler=scheduler, benchmark=benchmark, table=table, time_budget=time_budget,
                        extras=extras)


def _strategy_options(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """Every constructor option of strategy ``name``: its defaults, overridden by ``given``."""
    cls = STRATEGIES[name]
    params = {p.name: p for p in inspect.signature(cls.__init__).parameters.values()
              if p.name not in ("self", "space", "seed", "num_objectives") and p.kind is p.POSITIONAL_OR_KEYWORD}
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise ConfigError(f"strategy {name!r} has no option(s) {unknown}; its options are {sorted(params)}")
    missing = [n for n, p in params.items() if p.default is p.empty and n not in given]
    if missing:
        raise ConfigError(f"strategy {name!r} needs option(s) {missing}")
    resolved = {n: given.get(n, p.default) for n, p in params.items()}
    return json.loads(json.dumps(resolved))


def _train_config(given: dict[str, Any], seed: int) -> TrainConfig:
    return TrainConfig.from_dict({**SEARCH_TRAIN_DEFAULTS, "seed": seed, **given})


def _data_config(given: Any) -> DataConfig:
    values = _mapping("data", given or {})
    known = {f.name for f in fields(DataConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"data: unknown field(s) {unknown}; known fields are {sorted(known)}")
    data = DataConfig(**values)
    if not isinstance(data.dataset, str) or not data.dataset:
        raise ConfigError(f"data.dataset must be a dataset name, got {data.dataset!r}")
    if not (isinstance(data.val_fraction, (int, float)) and 0 < data.val_fraction < 1):
        raise ConfigError(f"data.val_fraction must be strictly between 0 and 1, got {data.val_fraction!r}")
    if data.limit is not None:
        _int("data.limit", data.limit, 1)
    root = None if data.data_root is None else str(data.data_root)
    return DataConfig(data.dataset, root, float(data.val_fraction), data.limit)


def _objective(given: Any) -> Objective:
    return Objective.from_dict(dict(_mapping("objective", given)))


def _check_objectives(objective: Objective, evaluator: str, one_shot: bool, strategy: str,
                      strategy_class: type | None) -> None:
    """Objectives the evaluator can produce and a strategy that can search them (benchmark columns are
    checked against the table when it is loaded)."""
    if not objective.objectives:
        return
    if one_shot:
        raise ConfigError(f"strategy {strategy!r} derives one architecture from a supernet by its own loss; it takes "
                          f"no objectives (a multi-trial strategy does: {list(MULTI_OBJECTIVE)})")
    if evaluator == "trainer":
        known = (*REPORTED_METRICS, *COST_METRICS)
        unknown = [c.name for c in objective.criteria if c.name not in known]
        if unknown:
            raise ConfigError(f"objective(s) {unknown}: the built-in trainer reports {list(known)}")
    if not objective.multi:
        return
    if strategy_class is not None:
        if not getattr(strategy_class, "multi_objective", False):
            raise ConfigError(f"strategy class {_qualname(strategy_class)} is single-objective (multi_objective is "
                              f"not True); {len(objective.criteria)} objectives need one that is")
    elif strategy not in MULTI_OBJECTIVE:
        raise ConfigError(f"strategy {strategy!r} has no multi-objective form; choose one of {list(MULTI_OBJECTIVE)}")


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping of settings, got {value!r}")
    return dict(value)


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# ---------------------------------------------------------------------------------------------- files
def load_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a JSON, TOML or YAML file (a mapping in :meth:`SearchConfig.to_dict`'s layout)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # optional: only for YAML files
            except ImportError:
                raise ConfigError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or use JSON/TOML") \
                    from None
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid {suffix.lstrip('.') or 'JSON'}: {err}") from None
    except Exception as err:  # yaml.YAMLError: PyYAML is optional, so its type cannot be named here
        raise ConfigError(f"config file {path} could not be parsed: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(data).__name__}")
    return data


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, merging nested mappings key by key (flags over a config file)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
