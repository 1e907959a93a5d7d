"""``nas search --strategy darts``: DARTS searches (one per seed) as Ray Tune trials, journaled as a run.

A DARTS run with ``--trials N`` runs N independent searches with seeds ``seed, seed+1, ...``
(the paper runs 4 and keeps the best cell). Each search is one Ray Tune trial on the resources
of ``--cpus-per-trial`` / ``--gpus-per-trial`` (on a GPU when one is given). Per epoch the trial
reports the supernet's losses and accuracies, the architecture derived from the current alphas
and its number of skip connections, and appends the full alpha trajectory (softmax weights per
edge) to ``RUN/darts/seed_<s>/alphas.jsonl``; ``alphas.png`` beside it plots the mean weight of
each op per epoch, so a skip-connect collapse can be seen.

When a search finishes, its derived architecture is journaled like any other run's trial
(``propose`` + ``result``; score = the supernet's accuracy on the alpha split at the returned
epoch), so ``nas show``, ``nas export`` and ``nas train`` work on a DARTS run unchanged. On the
NAS-Bench-201 space with ``--table PATH``, the derived cell's benchmark index and accuracies are
added to the trial's metrics. A search that fails (exception, NaN, out of memory) is recorded in
``RUN/darts/failed.jsonl`` with its reason and is not run again on resume; a search that was
interrupted runs again from its start.

Before anything is launched, the supernet's memory at the batch size is estimated and the run is
refused, with a batch size that fits, when it cannot fit the local device.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from nas.darts.adapters import adapter_for
from nas.darts.search import DartsConfig
from nas.journal import JOURNAL, atomic_write_json
from nas.run import SearchRun
from nas.strategies.base import Strategy
from search_spaces.spaces.base import SearchSpace

STRATEGY = "darts"
DARTS_SUBDIR = "darts"
FAILED_FILE = "failed.jsonl"
ALPHA_LOG = "alphas.jsonl"
RESULT_KEYS = ("seed", "device", "search_seconds", "epochs_run", "returned_epoch", "stopped_early", "stop_reason",
               "train_acc", "val_acc", "skip_connects")


class DerivedArchitectures(Strategy):
    """How a DARTS run looks to its journal: the proposals are the architectures its searches derived.

    DARTS does not propose architectures for others to train; each Ray trial is a whole search.
    The runner adds a search's derived architecture (:meth:`add`) when the search finishes and
    records it through :class:`~nas.run.SearchRun` as the next trial; replaying the journal
    (resume, ``nas show``) proposes the same architectures in the same order. A failed search
    never reaches the journal (see the module docstring), so ``tell`` only sees scores.
    """

    name = STRATEGY

    def __init__(self, space: SearchSpace, seed: int = 0, derived: list[Hashable] | None = None) -> None:
        super().__init__(space, seed)
        self.derived: list[Hashable] = list(derived or [])

    def add(self, arch: Hashable) -> None:
        self.derived.append(arch)

    def _propose(self) -> Hashable:
        if self.next_id >= len(self.derived):
            raise RuntimeError(f"DARTS run: no derived architecture for trial {self.next_id} "
                               f"({len(self.derived)} searches finished)")
        return self.derived[self.next_id]

    def _extra_state(self) -> dict[str, Any]:
        return {"derived": [self._arch_json(a) for a in self.derived]}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.derived = [self._arch_from_json(a) for a in state["derived"]]

    @classmethod
    def from_journal(cls, run_dir: str | Path, space: SearchSpace, seed: int = 0) -> DerivedArchitectures:
        """The strategy whose proposals replay the journal of ``run_dir`` (empty when there is none)."""
        derived = []
        for event in _read_lines(Path(run_dir) / JOURNAL):
            if event.get("event") == "propose":
                derived.append(space.from_json(event["arch"]))
        return cls(space, seed, derived)


def darts_options(config: dict[str, Any]) -> DartsConfig:
    """The run's :class:`DartsConfig` (``strategy_options`` over the paper's defaults); ValueError if bad."""
    return DartsConfig.from_dict({**config["strategy_options"], "seed": config["seed"]})


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """JSON lines of ``path`` (none if missing); a torn last line is skipped."""
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _append_line(path: Path, entry: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def plot_alphas(log: Path, out: Path) -> Path | None:
    """``out``: per alpha name, the mean softmax weight of each op over the edges, against epochs."""
    records = _read_lines(log)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(records[0]["alphas"])
    ops = records[0]["ops"]
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.8), squeeze=False)
    epochs = [r["epoch"] for r in records]
    for ax, name in zip(axes[0], names, strict=True):
        mean = np.array([np.asarray(r["alphas"][name]).mean(0) for r in records])  # (epochs, ops)
        for k, op in enumerate(ops):
            ax.plot(epochs, mean[:, k], label=op, lw=2.5 if op == "skip_connect" else 1.2)
        ax.set_title(f"{name if name == 'cell' else name + ' cell'}: mean softmax(alpha) over edges")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def darts_trial(config: dict[str, Any], data: Any = None) -> None:
    """One DARTS search inside a Ray worker; reports every epoch, then the derived architecture.

    Reports the supernet's ``train_acc`` / ``val_acc`` / losses, ``skip_connects`` and ``score``
    per epoch and, at the end, ``done`` with the derived ``arch`` (the space's JSON form); a
    failure is reported as ``failed`` with a reason instead of raising, so the run records why and
    goes on.
    """
    from ray import tune

    from nas.darts.memory import available_memory, check_memory
    from nas.darts.search import darts_search
    from nas.trainer import TrialFailed, device_for
    from search_spaces.spaces import make_space

    options = DartsConfig.from_dict(config["darts"])
    base = {"seed": options.seed}
    try:
        space = make_space(config["space"], **config["space_options"])
        adapter = adapter_for(space)
        device = device_for(config["gpus"])
        base["device"] = str(device)
        log_dir = Path(config["darts_dir"]) / f"seed_{options.seed}"
        log_dir.mkdir(parents=True, exist_ok=True)
        alpha_log = log_dir / ALPHA_LOG
        alpha_log.write_text("")  # a search that runs again starts its trajectory again

        def on_epoch(epoch: int, record: dict[str, Any]) -> None:
            _append_line(alpha_log, {"epoch": epoch, "ops": list(adapter.ops), "alphas": record["alphas"],
                                     "edges": adapter.edge_labels(), "skip_connects": record["skip_connects"],
                                     "arch": record["arch"], "hessian_eigenvalue": record.get("hessian_eigenvalue")})
            summary = {k: v for k, v in record.items() if not isinstance(v, (list, dict))}
            summary["val_acc"], summary["val_loss"] = summary.pop("valid_acc"), summary.pop("valid_loss")
            tune.report({**base, **summary, "failed": False, "score": summary["val_acc"]})

        check_memory(space, options, data.input_shape, available_memory(device), where=f"this trial's {device}")
        start = time.time()
        result = darts_search(space, options, data.train_x, data.train_y, device, on_epoch=on_epoch, adapter=adapter)
        plot_alphas(alpha_log, log_dir / "alphas.png")
        last = result.history[result.epoch - 1]
        tune.report({**base, "done": True, "failed": False, "arch": space.to_json(result.arch),
                     "score": float(result.valid_acc), "val_acc": float(result.valid_acc),
                     "train_acc": last["train_acc"], "skip_connects": last["skip_connects"],
                     "search_seconds": round(time.time() - start, 2), "epochs_run": len(result.history),
                     "returned_epoch": result.epoch, "stopped_early": result.stopped_early,
                     "stop_reason": result.stop_reason})
    except TrialFailed as err:
        tune.report({**base, "failed": True, "reason": err.reason, "score": float("nan")})
    except Exception as err:  # a failed search never takes the run down
        tune.report({**base, "failed": True, "reason": f"{type(err).__name__}: {err}", "score": float("nan")})


def _table_lookup(config: dict[str, Any], space: SearchSpace) -> Callable[[Hashable], dict[str, Any]] | None:
    """For NB-201 runs given ``--table``: derived cell -> its benchmark index and accuracies."""
    if config["space"] != "nb201" or not config.get("table"):
        return None
    from nas.benchmarks.nb201 import NB201Table

    table = NB201Table(config["table"])

    def lookup(arch: Hashable) -> dict[str, Any]:
        row = table.row(arch)  # type: ignore[arg-type]
        return {"nb201_index": int(table.index[row]), "nb201_test_acc": float(table.test_acc[row]),
                "nb201_valid_acc": float(table.valid_acc[row])}

    return lookup


def run_darts(config: dict[str, Any], run_dir: str | Path, *, address: str | None = None,
              cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, max_concurrent: int | None = None,
              num_cpus: int | None = None, download: bool = False, log: Callable[[str], None] = print) -> SearchRun:
    """Run (or resume) a DARTS run: ``config["trials"]`` searches on Ray Tune; returns the run.

    ValueError (nothing launched) for a space that is not per-edge, bad DARTS options, or a
    supernet that cannot fit the local device's memory at the batch size.
    """
    import torch
    from ray import tune

    from nas.darts.memory import available_memory, check_memory
    from nas.datasets import load_dataset
    from nas.engine import DOWNLOADABLE, SPACE_FILE
    from nas.ray_backend import ray_session
    from search_spaces.spaces import make_space

    options = darts_options(config)
    extra = {"download": True} if download and config["dataset"] in DOWNLOADABLE else {}
    data = load_dataset(config["dataset"], config["data_root"], **config["data_options"], **extra)
    space_options = {"input_shape": data.input_shape, "num_classes": data.num_classes, **config["space_options"]}
    space = make_space(config["space"], **space_options)
    adapter_for(space)
    lookup = _table_lookup(config, space)
    if address is None and (gpus_per_trial == 0 or torch.cuda.is_available()):  # else: checked in the trial
        device = torch.device("cuda" if gpus_per_trial > 0 else "cpu")
        check_memory(space, options, data.input_shape, available_memory(device), where=f"this machine's {device}")

    run_dir = Path(run_dir)
    strategy = DerivedArchitectures.from_journal(run_dir, space, config["seed"])
    run = SearchRun(run_dir, config, space, strategy, config["trials"], dedup=False)
    atomic_write_json(run_dir / SPACE_FILE, {"space": config["space"], "options": space_options})
    darts_dir = (run_dir / DARTS_SUBDIR).resolve()
    failed = {int(e["seed"]): str(e["reason"]) for e in _read_lines(darts_dir / FAILED_FILE)}
    done = {int(r.metrics["seed"]) for r in run.records.values() if "seed" in r.metrics}
    todo = [s for s in range(config["seed"], config["seed"] + config["trials"]) if s not in done and s not in failed]
    for seed, reason in sorted(failed.items()):
        log(f"seed {seed}: failed earlier ({reason}); not run again")
    if not todo:
        run.close()
        return run

    class JournalCallback(tune.Callback):
        """Prints each epoch; journals each finished search (or its failure) as it completes."""

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                            **info: Any) -> None:
            if "epoch" in result and not result.get("done"):
                log(f"seed {result['seed']} epoch {result['epoch']}/{options.epochs}: supernet train acc "
                    f"{result.get('train_acc', 0):.3f}, val acc {result.get('val_acc', 0):.3f}, "
                    f"skip connects {result.get('skip_connects')}")

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            result = trial.last_result or {}
            seed = int(trial.config["darts"]["seed"])
            if result.get("failed") or not result.get("done"):
                reason = str(result.get("reason") or "the search raised or its worker died")
                _append_line(darts_dir / FAILED_FILE, {"seed": seed, "reason": reason})
                log(f"seed {seed}: search failed: {reason}")
                return
            arch = space.from_json(result["arch"])
            strategy.add(arch)
            record, _ = run.next_trial()  # type: ignore[misc]
            metrics = {k: result[k] for k in RESULT_KEYS if k in result}
            metrics["alpha_log"] = str(darts_dir / f"seed_{seed}" / ALPHA_LOG)
            if lookup is not None:
                metrics.update(lookup(arch))
            run.finish(record.trial, float(result["score"]), metrics=metrics)
            extra = (f", NAS-Bench-201 index {metrics['nb201_index']} (test acc {metrics['nb201_test_acc']:.2f})"
                     if "nb201_index" in metrics else "")
            log(f"seed {seed}: trial {record.trial} derived after {result['epochs_run']} epochs, supernet val acc "
                f"{result['score']:.4f}, {result['skip_connects']} skip connects{extra}")

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            seed = int(trial.config["darts"]["seed"])
            reason = f"the search's worker raised or died; see {trial.path}/error.txt"
            _append_line(darts_dir / FAILED_FILE, {"seed": seed, "reason": reason})
            log(f"seed {seed}: search failed: {reason}")

    base = {"space": config["space"], "space_options": space_options, "gpus": gpus_per_trial,
            "darts_dir": str(darts_dir)}
    param_space = {**base, "darts": tune.grid_search([{**options.to_dict(), "seed": s} for s in todo])}
    fn = tune.with_resources(tune.with_parameters(darts_trial, data=data),
                             {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    try:
        with ray_session(address, num_cpus):
            tuner = tune.Tuner(fn, param_space=param_space, tune_config=tune.TuneConfig(
                max_concurrent_trials=max_concurrent, reuse_actors=False,
                trial_dirname_creator=lambda t: f"seed_{t.config['darts']['seed']}"),
                run_config=tune.RunConfig(storage_path=str((run_dir / "tune").resolve()), name="darts", verbose=0,
                                          callbacks=[JournalCallback()],
                                          failure_config=tune.FailureConfig(max_failures=0)))
            tuner.fit()
    finally:
        run.close()
    return run
