"""Compile an :class:`ArchGraph` into a ``torch.nn.Module``.

The graph is validated and shape-inferred once; the module then runs a precomputed plan (the
topological order with input indices, merge kinds and the step after which each value can be
freed), so a forward pass costs one Python loop over the nodes and nothing else.
"""

from __future__ import annotations

import re

import networkx as nx
import torch
from torch import nn

from search_spaces.errors import BadParameterError
from search_spaces.ir import ArchGraph
from search_spaces.layers import HighwayGate, build_op

_SUM, _CONCAT, _GATE = 1, 2, 3
_MERGE_CODES = {None: 0, "sum": _SUM, "concat": _CONCAT, "gate": _GATE}
# names a ModuleDict cannot hold (its attributes, e.g. a node named 'train', 'keys' or 'training')
_RESERVED = frozenset(dir(nn.ModuleDict()))


def _module_key(node: str, taken: set[str]) -> str:
    key = re.sub(r"\W", "_", node) or "node"
    while key in taken or key in _RESERVED:
        key += "_"
    taken.add(key)
    return key


def reset_parameters(module: nn.Module) -> None:
    """Initialisation used for every compiled graph: He-normal (fan-out) convs, unit/zero norms."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class GraphModule(nn.Module):
    """The network of an ArchGraph. Input (B, *input_shape) -> output (B, *output_shape).

    ``forward_features`` runs up to the graph's features node (e.g. (B, C, H, W) before global
    pooling), ``forward_head`` the rest. Initialisation is deterministic given ``seed`` and does
    not disturb the global RNG. Node modules live in ``self.nodes`` under their (sanitised) ids.
    """

    def __init__(self, arch: ArchGraph, seed: int = 0) -> None:
        super().__init__()
        shapes = arch.validate()
        self.arch_hash = arch.canonical_hash()
        self.input_shape = tuple(shapes[arch.input].dims)  # type: ignore[index]
        self.output_shape = tuple(shapes[arch.output].dims)  # type: ignore[index]
        features = arch.features_node()
        ancestors = arch.graph.subgraph(_ancestors_and_self(arch, features))
        order = [n for n in arch.topological_order() if n in ancestors]
        order += [n for n in arch.topological_order() if n not in ancestors]
        index = {node: i for i, node in enumerate(order)}
        self._split = index[features] + 1
        for node in order[self._split:]:
            early = [src for src in arch.inputs_of(node) if index[src] < self._split and src != features]
            if early:
                raise BadParameterError(node, f"head node reads {early[0]!r} from before the features "
                                              f"node {features!r}; set arch.features to a node the head "
                                              "depends on alone")

        self.nodes = nn.ModuleDict()
        self.gates = nn.ModuleDict()
        taken: set[str] = set()
        last_use = {node: max((index[s] for s in arch.graph.succ[node]), default=len(order)) for node in order}
        plan = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for k, node in enumerate(order):
                attrs = arch.attrs(node)
                ins = tuple(index[src] for src in arch.inputs_of(node))
                in_shape = arch.input_shape(node, shapes)
                merge = _MERGE_CODES[attrs["merge"]] if len(ins) > 1 else 0
                key = _module_key(node, taken)
                module = None
                if attrs["op"] not in ("input", "identity"):
                    module = build_op(attrs["op"], in_shape, attrs["params"])
                    self.nodes[key] = module
                gate = None
                if merge == _GATE:
                    gate = HighwayGate(in_shape, attrs["merge_params"]["kernel"], attrs["merge_params"]["bias"])
                    self.gates[key] = gate
                release = tuple(index[n] for n in order if last_use[n] == k and n != features)
                dim = 1 if in_shape.kind == "map" else -1
                plan.append((module, ins, merge, gate, dim, release))
            reset_parameters(self)
        self._plan = plan
        self._features_index = self._split - 1

    def _run(self, values: list, start: int, stop: int) -> None:
        plan = self._plan
        for k in range(start, stop):
            module, ins, merge, gate, dim, release = plan[k]
            if merge == 0:
                x = values[ins[0]] if ins else values[k]
            elif merge == _SUM:
                x = values[ins[0]]
                for i in ins[1:]:
                    x = x + values[i]
            elif merge == _CONCAT:
                x = torch.cat([values[i] for i in ins], dim)
            else:
                x = gate(values[ins[0]], values[ins[1]])
            values[k] = x if module is None else module(x)
            for r in release:
                values[r] = None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *input_shape) -> features (e.g. (B, C, H, W) before the head's pooling)."""
        values: list = [None] * len(self._plan)
        values[0] = x
        self._run(values, 0, self._split)
        return values[self._features_index]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """features -> (B, *output_shape) (e.g. logits (B, num_classes))."""
        if self._split == len(self._plan):
            return features
        values: list = [None] * len(self._plan)
        values[self._features_index] = features
        self._run(values, self._split, len(self._plan))
        return values[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: list = [None] * len(self._plan)
        values[0] = x
        self._run(values, 0, len(self._plan))
        return values[-1]


def _ancestors_and_self(arch: ArchGraph, node: str) -> set[str]:
    return nx.ancestors(arch.graph, node) | {node}


def compile_graph(arch: ArchGraph, seed: int = 0, device: str | torch.device | None = None) -> GraphModule:
    """Validate ``arch`` and build its module (deterministic weights from ``seed``) on ``device``."""
    module = GraphModule(arch, seed)
    return module.to(device) if device is not None else module
