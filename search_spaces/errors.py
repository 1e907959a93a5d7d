"""Typed errors for architecture graphs.

Every error names the node it concerns and the reason, so a user (or a search strategy that
produced the graph) can see what to fix without reading a traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from a user (a value, a file, a configuration): its message is one line that says
    what was wrong, where, and what to do. The root of every error the ``nas`` command reports
    without a traceback; anything else escaping is a bug and shows its traceback."""


class ArchGraphError(InputError):
    """Base class: an architecture graph is invalid. ``node`` is the offending node id (or None)."""

    kind = "invalid graph"

    def __init__(self, node: str | None, reason: str) -> None:
        self.node = node
        self.reason = reason
        where = f"node {node!r}" if node is not None else "graph"
        super().__init__(f"{self.kind} at {where}: {reason}")


class CycleError(ArchGraphError):
    kind = "cycle"


class UnreachableNodeError(ArchGraphError):
    kind = "unreachable node"


class DanglingNodeError(ArchGraphError):
    kind = "dangling node"


class UnknownOpError(ArchGraphError):
    kind = "unknown op"


class BadParameterError(ArchGraphError):
    kind = "bad parameter"


class ShapeMismatchError(ArchGraphError):
    kind = "shape mismatch"


class ChannelMismatchError(ShapeMismatchError):
    kind = "channel mismatch"


class ResolutionMismatchError(ShapeMismatchError):
    kind = "resolution mismatch"


class GraphFormatError(ArchGraphError):
    """The JSON form of a graph is malformed or of an unsupported format version."""

    kind = "malformed graph file"
