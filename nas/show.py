"""Open an existing run directory read-only for ``nas show``: config, journal, replayed strategy.

Also the way back from a journaled trial to what it trained: :func:`graph_of_trial` rebuilds the
trial's exact graph (with the space options the search used, from ``space.json``) and
:func:`weights_of_trial` finds the weights file the trial saved (``weights.safetensors`` in its
Tune trial directory, named by the ``weights`` entry of its result metrics).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas.engine import DARTS, SPACE_FILE, build_strategy
from nas.journal import CONFIG
from nas.run import SearchRun
from search_spaces.ir import ArchGraph
from search_spaces.spaces import make_space
from search_spaces.spaces.base import SearchSpace

TRIALS_SUBDIR = Path("tune") / "trials"  # where run_on_ray's Tune keeps the trial directories


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None


def run_space(run_dir: str | Path, config: dict[str, Any]) -> SearchSpace:
    """The run's search space: built from ``space.json`` (the exact options the search used, input
    shape and classes of its dataset included) when present, else from the config's options."""
    path = Path(run_dir) / SPACE_FILE
    if not path.is_file():  # runs from before space.json, and benchmark runs
        return make_space(config["space"], **config.get("space_options", {}))
    spec = _read_json(path)
    if not isinstance(spec, dict) or spec.get("space") != config["space"] or not isinstance(spec.get("options"), dict):
        raise ValueError(f"{path} does not describe the run's space {config['space']!r}: {spec!r}")
    return make_space(spec["space"], **spec["options"])


def open_run(run_dir: str | Path) -> SearchRun:
    """The run's state as of its journal (nothing is dispatched). ValueError if it is not a run dir."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a run directory (no {CONFIG}); pass the directory `nas search` printed")
    config = _read_json(path)
    space = run_space(run_dir, config)
    if config["strategy"] == DARTS:
        from nas.darts.runner import DerivedArchitectures

        strategy = DerivedArchitectures.from_journal(run_dir, space, config["seed"])
        return SearchRun(run_dir, config, space, strategy, config["trials"], identify=lambda arch: ("", None),
                         dedup=False)
    strategy = build_strategy(config, space)
    return SearchRun(run_dir, config, space, strategy, config["trials"], identify=lambda arch: ("", None))


def _record(run: SearchRun, trial_id: int) -> Any:
    record = run.records.get(trial_id)
    if record is None:
        ids = sorted(run.records)
        known = f"trials {ids[0]}..{ids[-1]}" if ids else "no trials yet"
        raise ValueError(f"run {run.run_dir} has no trial {trial_id} ({known})")
    return record


def graph_of_trial(run: SearchRun, trial_id: int) -> ArchGraph:
    """The ArchGraph trial ``trial_id`` of ``run`` trained (validated).

    ValueError when the trial does not exist, or when the rebuilt graph's canonical hash differs
    from the journal's (a run from before ``space.json`` searched with other input shape or
    classes than the space defaults, or the space's code changed since the search).
    """
    record = _record(run, trial_id)
    graph = run.space.to_graph(run.space.from_json(record.arch))
    config = _read_json(Path(run.run_dir) / CONFIG)
    if not config.get("benchmark") and graph.canonical_hash() != record.hash:  # benchmarks key by arch string
        hint = ("the search space's code changed since the search" if (Path(run.run_dir) / SPACE_FILE).is_file()
                else f"the run has no {SPACE_FILE} (it predates it), so its space was rebuilt with default "
                     "input shape and classes")
        raise ValueError(f"trial {trial_id} of {run.run_dir} rebuilds to a different graph than the search trained "
                         f"(hash {graph.canonical_hash()[:16]} vs journal {record.hash[:16]}): {hint}")
    return graph


def weights_of_trial(run: SearchRun, trial_id: int) -> Path | None:
    """The weights file (safetensors) trial ``trial_id`` saved, or None when it saved none.

    The path comes from the trial's result metrics (a ``cached`` trial shares the weights of the
    earlier trial of the same architecture); it is looked up under this run's ``tune/trials/`` by
    its trial directory's name first, so a moved or copied run directory finds its own files. ValueError
    when the trial does not exist; None for a trial without a result, a failed one, or a missing file.
    """
    record = _record(run, trial_id)
    saved = record.metrics.get("weights") if record.done else None
    if not saved:
        return None
    recorded = Path(str(saved))
    for candidate in (Path(run.run_dir) / TRIALS_SUBDIR / recorded.parent.name / recorded.name, recorded):
        if candidate.is_file():
            return candidate
    return None
