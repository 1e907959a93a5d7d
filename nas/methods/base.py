"""One-shot search methods: each Ray trial is a whole search (e.g. a DARTS supernet), indexed by seed.

A one-shot run with ``trials=N`` runs N independent searches with seeds ``seed, seed+1, ...``.
When a search finishes, the architecture it derived is journaled like any other run's trial
(``propose`` + ``result``), so ``nas show``, ``nas export`` and ``nas train`` work on it
unchanged. A search that fails is recorded in ``RUN/<subdir>/failed.jsonl`` with its reason and
not run again on resume; an interrupted one runs again from its start.

A subclass gives its name, default space and trial count, the resolution of its options
(:meth:`OneShotMethod.resolve_options`), the trial function (:meth:`trainable`) and how a
finished search's report becomes the trial's score and metrics (:meth:`outcome`).
"""

from __future__ import annotations

import json
import os
from abc import abstractmethod
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, ClassVar

from nas.journal import Journal
from nas.ray_backend import TrialSource
from nas.run import SearchRun
from nas.rundir import ONE_SHOT_SUBDIR
from nas.strategies.base import Strategy
from search_spaces.spaces.base import SearchSpace

FAILED_FILE = "failed.jsonl"


class DerivedArchitectures(Strategy):
    """How a one-shot run looks to its journal: the proposals are the architectures its searches derived.

    The method adds a search's derived architecture (:meth:`add`) when the search finishes and
    records it through :class:`~nas.run.SearchRun` as the next trial; replaying the journal
    (resume) proposes the same architectures in the same order. A failed search never reaches
    the journal, so ``tell`` only sees scores.
    """

    name = "one-shot"

    def __init__(self, space: SearchSpace, seed: int = 0, derived: list[Hashable] | None = None) -> None:
        super().__init__(space, seed)
        self.derived: list[Hashable] = list(derived or [])

    def add(self, arch: Hashable) -> None:
        self.derived.append(arch)

    def _propose(self) -> Hashable:
        if self.next_id >= len(self.derived):
            raise RuntimeError(f"one-shot run: no derived architecture for trial {self.next_id} "
                               f"({len(self.derived)} searches finished)")
        return self.derived[self.next_id]

    def _extra_state(self) -> dict[str, Any]:
        return {"derived": [self._arch_json(a) for a in self.derived]}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.derived = [self._arch_from_json(a) for a in state["derived"]]

    @classmethod
    def from_journal(cls, run_dir: str | Path, space: SearchSpace, seed: int = 0) -> DerivedArchitectures:
        """The strategy whose proposals replay the journal of ``run_dir`` (empty when there is none)."""
        derived = [space.from_json(e["arch"]) for e in Journal(run_dir).read() if e.get("event") == "propose"]
        return cls(space, seed, derived)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """JSON lines of ``path`` (none if missing); a torn last line is skipped."""
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def append_line(path: Path, entry: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


class OneShotMethod(TrialSource):
    """Base of one-shot methods (see the module docstring)."""

    name: ClassVar[str] = ""
    default_space: ClassVar[str] = ""
    default_trials: ClassVar[int] = 4
    reuse_actors = False  # each search is a fresh process: no state leaks between seeds

    def __init__(self, space: SearchSpace, options: dict[str, Any], *, seed: int, trials: int, data: Any,
                 run_dir: str | Path, config: dict[str, Any], table: str | None = None, gpus: float = 0.0,
                 cpus: float = 1.0, remote: bool = False, log: Callable[[str], None] = print) -> None:
        """``gpus`` / ``cpus``: per search (per worker of a search on several); ``remote``: the searches run
        on a cluster (not this machine). Runs :meth:`check` first: nothing is written when it refuses."""
        self.space = space
        self.options = options
        self.data = data
        self.table = table
        self.gpus = gpus
        self.cpus = cpus
        self.remote = remote
        self.log = log
        self.check()
        self.strategy = DerivedArchitectures.from_journal(run_dir, space, seed)
        self.run = SearchRun(run_dir, config, space, self.strategy, trials, dedup=False, graph_of=lambda g: g)
        self.dir = (Path(run_dir) / ONE_SHOT_SUBDIR).resolve()
        failed = {int(e["seed"]): str(e["reason"]) for e in read_lines(self.dir / FAILED_FILE)}
        done = {int(r.metrics["seed"]) for r in self.run.records.values() if "seed" in r.metrics}
        for s, reason in sorted(failed.items()):
            log(f"seed {s}: failed earlier ({reason}); not run again")
        self.todo = [s for s in range(seed, seed + self.run.max_trials) if s not in done and s not in failed]

    # ------------------------------------------------------------------ what a subclass gives
    @classmethod
    @abstractmethod
    def resolve_options(cls, options: dict[str, Any], train: dict[str, Any], seed: int) -> dict[str, Any]:
        """Every option of the method, resolved (JSON data); ``train``: the user's training settings
        (epochs, batch size, lr, ...), which override the method's own defaults. InputError if bad."""

    def check(self) -> None:
        """Checks before anything is launched (e.g. memory); raise InputError to refuse."""

    @abstractmethod
    def outcome(self, result: dict[str, Any]) -> tuple[Hashable, float, dict[str, Any]]:
        """A finished search's last report (it has ``derived``: True) -> (derived architecture, score,
        metrics to journal). Tune flattens nested report values: report structures as JSON strings."""

    def describe_outcome(self, metrics: dict[str, Any]) -> str:
        """Extra words for the line printed when a search finishes (default: none)."""
        return ""

    def describe_epoch(self, result: dict[str, Any]) -> str | None:
        """A progress line for an intermediate report (None: print nothing)."""
        return None

    # ------------------------------------------------------------------ the dispatcher's side
    @property
    def finished(self) -> bool:
        return not self.todo

    def next_config(self) -> dict[str, Any] | None:
        if not self.todo:
            return None
        seed = self.todo.pop(0)
        return {"seed": seed, "dir": str(self.dir / f"seed_{seed}"), "dirname": f"seed_{seed}"}

    def on_result(self, config: dict[str, Any], result: dict[str, Any]) -> None:
        if not result.get("derived") and not result.get("failed"):
            line = self.describe_epoch(result)
            if line:
                self.log(line)

    def on_retry(self, config: dict[str, Any], reason: str, attempt: int) -> None:
        self.log(f"seed {config['seed']}: {reason}; running the search again (attempt {attempt + 1})")

    def on_complete(self, config: dict[str, Any], result: dict[str, Any] | None, error: str | None,
                    infrastructure: bool = False) -> None:
        seed = int(config["seed"])
        if error is not None or result is None or result.get("failed") or not result.get("derived"):
            reason = error or str((result or {}).get("reason") or "the search raised or its worker died")
            append_line(self.dir / FAILED_FILE, {"seed": seed, "reason": reason})
            self.log(f"seed {seed}: search failed: {reason}")
            return
        arch, score, metrics = self.outcome(result)
        self.strategy.add(arch)
        nxt = self.run.next_trial()
        if nxt is None:
            raise RuntimeError(f"one-shot run: no trial left for the search of seed {seed}")
        record = nxt[0]
        self.run.finish(record.trial, score, metrics={"seed": seed, "derived": True, **metrics})
        self.log(f"seed {seed}: trial {record.trial} derived {self.run.describe(record)} with score {score:.4f}"
                 f"{self.describe_outcome(metrics)}")

