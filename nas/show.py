"""Open an existing run directory read-only for ``nas show``: config, journal, replayed strategy."""

from __future__ import annotations

import json
from pathlib import Path

from nas.engine import build_strategy
from nas.journal import CONFIG
from nas.run import SearchRun
from search_spaces.spaces import make_space


def open_run(run_dir: str | Path) -> SearchRun:
    """The run's state as of its journal (nothing is dispatched). ValueError if it is not a run dir."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a run directory (no {CONFIG}); pass the directory `nas search` printed")
    config = json.loads(path.read_text())
    space = make_space(config["space"], **config.get("space_options", {}))
    strategy = build_strategy(config, space)
    return SearchRun(run_dir, config, space, strategy, config["trials"], identify=lambda arch: ("", None))
