"""Search-space layer: the architecture graph IR, building blocks, compiler and search spaces."""

from search_spaces.compiler import GraphModule, compile_graph
from search_spaces.errors import (
    ArchGraphError,
    BadParameterError,
    ChannelMismatchError,
    CycleError,
    DanglingNodeError,
    GraphFormatError,
    ResolutionMismatchError,
    ShapeMismatchError,
    UnknownOpError,
    UnreachableNodeError,
)
from search_spaces.ir import ArchGraph
from search_spaces.ops import OPS, Shape

__all__ = [
    "OPS",
    "ArchGraph",
    "ArchGraphError",
    "BadParameterError",
    "ChannelMismatchError",
    "CycleError",
    "DanglingNodeError",
    "GraphFormatError",
    "GraphModule",
    "ResolutionMismatchError",
    "Shape",
    "ShapeMismatchError",
    "UnknownOpError",
    "UnreachableNodeError",
    "compile_graph",
]
