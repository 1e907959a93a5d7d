"""The one-shot search methods by name (multi-trial strategies are in :data:`nas.strategies.STRATEGIES`).

A new one-shot method subclasses :class:`nas.methods.base.OneShotMethod` and is added here; the
configuration, the engine, the CLI and ``nas show`` then know it without further change.
"""

from __future__ import annotations

from nas.darts.method import Darts
from nas.methods.base import OneShotMethod
from nas.strategies import STRATEGIES

ONE_SHOT: dict[str, type[OneShotMethod]] = {Darts.name: Darts}


def method_names() -> list[str]:
    """Every search method name: multi-trial strategies and one-shot methods."""
    return sorted([*STRATEGIES, *ONE_SHOT])
