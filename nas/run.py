"""A search run independent of how trials are executed: strategy + journal + dedup + budget.

``SearchRun`` hands out trials (``next_trial``) and takes their outcomes (``finish``); the Ray
dispatcher (:mod:`nas.ray_backend`) and the table-lookup benchmark mode both drive it.

Resume: the journal is replayed into a fresh strategy (from the latest snapshot when there is
one): every journaled proposal must be proposed again identically (otherwise the code or the
config changed and the run refuses to continue), every journaled result is told again. Trials
proposed but without a result are dispatched again first, under their original ids, so no
finished trial runs twice, none is lost, and the trial budget is counted exactly.

Budget: ``max_trials`` counts proposals, including those answered without training: an
architecture whose canonical hash was already evaluated in this run gets the earlier result
(status ``cached``), and one that breaks a hard params/FLOPs limit is ``failed`` untrained.
Strategies never repeat a member (their contract), so cached answers come from distinct members
with the same network (isomorphic cells). A proposal whose hash is still being evaluated is not
dispatched: it waits and gets that trial's result as ``cached`` when it ends.

Fidelity: ``finish(..., budget=b)`` records a trial stopped early (by ASHA) after ``b`` epochs;
the journal keeps ``budget`` and the strategy is told ``tell(trial, score, budget=b)``.

Objectives: with two or more ``criteria`` a result carries ``values`` (each objective's own value,
journaled), the strategy is told them signed so that each is maximised, and ``score`` is the
first one signed (the leaderboard's order).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

from nas.journal import Journal
from nas.objective import Criterion
from nas.rundir import RunLock, RunRecords, TrialRecord, write_graph
from nas.strategies.base import Strategy, is_failure
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.spaces.base import SearchSpace


def graph_identity(space: SearchSpace) -> Callable[[Hashable], tuple[str, ArchGraph]]:
    """Dedup by canonical graph hash; the payload is the architecture's graph."""

    def identify(arch: Hashable) -> tuple[str, ArchGraph]:
        graph = space.to_graph(arch)
        return graph.canonical_hash(), graph

    return identify


class ResumeError(InputError):
    """The journal cannot be replayed with the current code and configuration."""


class SearchRun(RunRecords):
    """Strategy, journal, dedup cache and budget of one run directory (see module docstring)."""

    def __init__(self, run_dir: str | Path, config: dict[str, Any], space: SearchSpace, strategy: Strategy,
                 max_trials: int, durable: bool = True,
                 identify: Callable[[Hashable], tuple[str, Any]] | None = None,
                 feasibility: Callable[[Any], str | None] | None = None, dedup: bool = True,
                 snapshot_every: int = 1, graph_of: Callable[[Any], ArchGraph | None] | None = None,
                 criteria: tuple[Criterion, ...] = ()) -> None:
        """``identify(arch) -> (hash, payload)``: the dedup key and what a dispatcher needs to run the
        trial (default: canonical graph hash and the ArchGraph). ``feasibility(payload)`` returns a
        reason when the trial must fail without running (e.g. a params limit), else None.
        ``dedup=False`` runs repeated architectures again (tabular protocols charge every query).
        ``snapshot_every``: save the strategy's state every N results (0: only at close).
        ``graph_of(payload)``: the graph to store in ``graphs/`` when a trial is handed out (so any
        reader rebuilds it without the space). A larger ``config["trials"]`` than the stored one
        extends the run (``max_trials`` follows it). ``criteria``: the objectives (two or more: a
        multi-objective search; the strategy must search as many)."""
        if max_trials < 1:
            raise InputError(f"max_trials must be >= 1, got {max_trials}")
        super().__init__(run_dir, max_trials, criteria)
        if strategy.num_objectives != (len(self.criteria) if self.multi else 1):
            raise InputError(f"strategy {strategy.name!r} searches {strategy.num_objectives} objective(s) but the "
                             f"search has {max(len(self.criteria), 1)}: build it with num_objectives="
                             f"{max(len(self.criteria), 1)}")
        self.space = space
        self.strategy = strategy
        self.identify = identify or graph_identity(space)
        self.graph_of = graph_of
        self.feasibility = feasibility
        self.dedup = dedup
        self.snapshot_every = snapshot_every
        self.lock = RunLock(run_dir).acquire()  # one writer per run directory, until close()
        self.journal = Journal(run_dir, durable=durable)
        self.cache: dict[str, TrialRecord] = {}
        self.inflight: dict[str, int] = {}  # hash -> the trial evaluating it
        self.waiting: dict[str, list[int]] = {}  # hash -> later trials of it, answered when it ends
        self.redispatch: deque[int] = deque()
        self.checkpoints: dict[int, str] = {}  # pending trial -> its latest checkpoint in the run's storage
        try:
            self.resumed = self.journal.open_config(config, grow=("trials",))
            self._restore()
        except BaseException:
            self.journal.close()
            self.lock.release()
            raise

    # ------------------------------------------------------------------ trials
    def next_trial(self) -> tuple[TrialRecord, Any] | None:
        """The next trial to run and its payload, or None when the whole budget has been handed out."""
        while True:
            if self.redispatch:
                record = self.records[self.redispatch.popleft()]
                if self._answered_or_waiting(record):
                    continue
                self.inflight[record.hash] = record.trial
                return record, self.identify(self.space.from_json(record.arch))[1]
            if self.num_proposed >= self.max_trials:
                return None
            proposal = self.strategy.ask()
            key, payload = self.identify(proposal.arch)
            event = {"event": "propose", "trial": proposal.trial_id, "arch": self.space.to_json(proposal.arch),
                     "hash": key}
            event["label"] = self._label(proposal.arch)
            graph = self.graph_of(payload) if self.graph_of is not None else None
            if graph is not None:
                write_graph(self.run_dir, key, graph)  # before the journal names it
            self.journal.append(event)
            record = self._add_proposal(event)
            record.t_propose = self._clock()
            if self._answered_or_waiting(record):
                continue
            reason = self.feasibility(payload) if self.feasibility is not None else None
            if reason is not None:
                self.finish(record.trial, None, status="failed", reason=reason)
                continue
            if self.dedup:
                self.inflight[record.hash] = record.trial
            return record, payload

    def _answered_or_waiting(self, record: TrialRecord) -> bool:
        """Dedup: answer ``record`` from an earlier result of its hash, or park it behind the trial
        still evaluating that hash; False when it must run."""
        if not self.dedup:
            return False
        earlier = self.cache.get(record.hash)
        if earlier is not None:
            self._answer(record.trial, earlier)
            return True
        running = self.inflight.get(record.hash)
        if running is not None and running != record.trial:
            self.waiting.setdefault(record.hash, []).append(record.trial)
            return True
        return False

    def _answer(self, trial: int, earlier: TrialRecord) -> None:
        self.finish(trial, earlier.score, status="cached",
                    reason=f"same architecture as trial {earlier.trial}" +
                    (f" ({earlier.reason})" if earlier.reason else ""), metrics=earlier.metrics,
                    budget=earlier.budget, values=earlier.values)

    def checkpoint(self, trial: int, uri: str, epoch: int | None = None) -> None:
        """Journal where trial ``trial``'s latest checkpoint (after ``epoch``) is: a trial that runs
        again continues there."""
        if self.records[trial].done:
            return
        self.checkpoints[trial] = uri
        self.journal.append({"event": "checkpoint", "trial": trial, "path": uri, "epoch": epoch})

    def retry(self, trial: int, reason: str, attempt: int) -> None:
        """Journal that trial ``trial`` runs again after an infrastructure failure (it stays pending)."""
        if self.records[trial].done:
            raise KeyError(f"trial {trial} already has a result")
        self.journal.append({"event": "retry", "trial": trial, "attempt": attempt, "reason": reason})

    def finish(self, trial: int, score: float | None, status: str = "ok", reason: str | None = None,
               metrics: dict[str, Any] | None = None, budget: float | None = None,
               cacheable: bool = True, values: Sequence[float] | None = None) -> TrialRecord:
        """Record a trial's outcome durably and tell the strategy (None / non-finite = failed;
        ``budget``: the trial was stopped early after that many epochs; ``cacheable=False``: an
        infrastructure failure, never answered to a later proposal of the same hash; ``values``:
        multi-objective, each objective's value, required with a score). Trials waiting for the
        same hash are answered with this result right after (or run, when it is not cacheable)."""
        record = self.records[trial]
        if record.done:
            raise KeyError(f"trial {trial} already has a result")
        if self.multi and score is not None and not is_failure(score):
            if values is None or len(values) != len(self.criteria):
                raise InputError(f"trial {trial}: a multi-objective result needs one value per objective "
                                 f"({len(self.criteria)}), got {values!r}")
            if is_failure(tuple(float(v) for v in values)):
                score, reason = None, reason or f"non-finite objective values {list(values)}"
        if is_failure(score):
            score = None
            if status == "ok":
                status = "failed"
            reason = reason or "no finite score"
        if score is None:
            budget = None
        self._apply_result(record, status, score, reason, metrics or {}, budget, cacheable,
                           values if self.multi else None)
        event = {"event": "result", "trial": trial, "status": status, "score": score, "reason": reason,
                 "metrics": record.metrics}
        if record.values is not None:
            event["values"] = list(record.values)
        if budget is not None:
            event["budget"] = budget
        if not cacheable:
            event["infrastructure"] = True
        self.journal.append(event)
        record.t_result = self._clock()
        self._tell(record)
        if self.snapshot_every and self.strategy.num_told % self.snapshot_every == 0:
            self.journal.save_state(self.strategy.state_dict())
        if status != "cached" and self.inflight.get(record.hash) == trial:
            del self.inflight[record.hash]
            for later in self.waiting.pop(record.hash, []):
                if cacheable:
                    self._answer(later, record)
                else:
                    self.redispatch.append(later)  # it runs itself
        return record

    def _tell(self, record: TrialRecord) -> None:
        """Tell the strategy ``record``'s outcome: its score, or its signed objective values."""
        told: Any = record.score
        if self.multi and record.values is not None:
            told = tuple(c.signed(v) for c, v in zip(self.criteria, record.values, strict=True))
        if record.budget is None:
            self.strategy.tell(record.trial, told)  # the pre-fidelity signature: user strategies may override tell
        else:
            self.strategy.tell(record.trial, told, budget=record.budget)

    def _apply_result(self, record: TrialRecord, status: str, score: float | None, reason: str | None,
                      metrics: dict[str, Any], budget: float | None = None, cacheable: bool = True,
                      values: Sequence[float] | None = None) -> None:
        super()._apply_result(record, status, score, reason, metrics, budget, values)
        if status != "cached" and cacheable:
            self.cache.setdefault(record.hash, record)

    def _label(self, arch: Hashable) -> str:
        to_string = getattr(self.space, "to_string", None)
        return str(to_string(arch)) if to_string is not None else str(arch)

    def close(self) -> None:
        """Snapshot the strategy, close the journal and release the run directory's lock."""
        try:
            if self.journal.lines:
                self.journal.save_state(self.strategy.state_dict())
        finally:
            self.journal.close()
            self.lock.release()

    def _clock(self) -> float:
        return round(time.time() - self.journal.start, 3)

    # ------------------------------------------------------------------ resume
    def _restore(self) -> None:
        events = self.journal.read()
        snapshot = self.journal.load_state()
        replay_from = 0
        if snapshot is not None and snapshot[0] <= len(events):
            self.strategy.load_state_dict(snapshot[1])
            replay_from = snapshot[0]
        for line, event in enumerate(events):
            kind = event.get("event")
            if kind == "propose":
                record = self._add_proposal(event)
                if line >= replay_from:
                    proposal = self.strategy.ask()
                    if proposal.trial_id != record.trial or self.space.to_json(proposal.arch) != record.arch:
                        raise ResumeError(
                            f"journal replay diverged at trial {record.trial}: the strategy now proposes "
                            f"{self.space.to_json(proposal.arch)} where the journal has {record.arch}; the code or "
                            "its defaults changed since the run started. Use a new --run-dir.")
            elif kind == "checkpoint":
                self.checkpoints[int(event["trial"])] = str(event["path"])
            elif kind == "result":
                record = self.records[event["trial"]]
                if self.multi and event["score"] is not None and event.get("values") is None:
                    raise ResumeError(f"{self.journal.path}: trial {record.trial}'s result has no objective values; "
                                      "the run was not multi-objective. Use a new --run-dir")
                self._apply_result(record, event["status"], event["score"], event.get("reason"),
                                   event.get("metrics", {}), event.get("budget"), not event.get("infrastructure"),
                                   event.get("values"))
                record.t_result = event.get("t")
                if line >= replay_from:
                    self._tell(record)
        self.redispatch = deque(sorted(t for t, r in self.records.items() if not r.done))
        if events:
            self.journal.set_time_offset(float(events[-1].get("t", 0.0)))
