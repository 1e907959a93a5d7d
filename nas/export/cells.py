"""Cells of the cell-based search spaces as one class each, with the genotype as data.

A cell instance in a graph (nodes tagged ``nb201_cell:...``, ``darts_normal_cell:...``,
``darts_reduce_cell:...``, ``binary_cell:...``) records no arguments, so each :class:`BlockSpec` here
reads its genotype back from the nodes (``args``), and the generator re-runs the space's own cell
builder with it on a scratch graph: only an instance whose nodes come out identical is exported as
the class. The class text lists only the ops the file's genotypes use (AutoDL / quark0 style: an
``OPS`` table of constructors), and the genotype becomes a module-level constant passed to every
instance. NAS-Bench-201's reduction blocks (AutoDL ``ResNetBasicblock``) are a class too.
"""

from __future__ import annotations

import re
from typing import Any

from nas.export.templates import BlockSpec, on_one_input
from search_spaces.ir import ArchGraph
from search_spaces.ops import Shape
from search_spaces.spaces import binary, darts, nb201


def _ops_table(entries: dict[str, str], used: set[str] | None) -> str:
    """``OPS = {...}``: the constructor of each op in ``used`` (all when None), in ``entries`` order."""
    lines = [f'    "{op}": {text},' for op, text in entries.items() if used is None or op in used]
    return "OPS = {\n" + "\n".join(lines) + "\n}\n\n"


def _used(instances: list[dict[str, Any]] | None, ops_of: Any) -> set[str] | None:
    return None if instances is None else {op for kwargs in instances for op in ops_of(kwargs["genotype"])}


# ----------------------------------------------------------------------------- NAS-Bench-201
NB201_OPS = {
    "none": "lambda c: Zero()",
    "skip_connect": "lambda c: nn.Identity()",
    "nor_conv_1x1": "lambda c: relu_conv_bn(c, c, 1)",
    "nor_conv_3x3": "lambda c: relu_conv_bn(c, c, 3)",
    "avg_pool_3x3": "lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)",
}

NB201_CELL = '''
class Cell(nn.Module):
    """NAS-Bench-201 cell (AutoDL ``InferCell``): node j is the sum of op(node i) over the edges (j, i, op) of
    ``genotype``; node 0 is the input, the last node the output. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, genotype: tuple[tuple[int, int, str], ...]) -> None:
        super().__init__()
        self.genotype = genotype
        self.edges = nn.ModuleList(OPS[op](channels) for _, _, op in genotype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, max(to for to, _, _ in self.genotype) + 1):
            nodes.append(sum(op(nodes[i]) for (to, i, _), op in zip(self.genotype, self.edges, strict=True) if to == j))
        return nodes[-1]
'''


def _nb201_text(instances: list[dict[str, Any]] | None) -> str:
    return _ops_table(NB201_OPS, _used(instances, lambda genotype: [op for _, _, op in genotype])) + NB201_CELL


def _nb201_op(graph: ArchGraph, node: str) -> str | None:
    """The NAS-Bench-201 op name of an edge node (None: not one of them)."""
    op, p = graph.op(node), graph.params(node)
    if op == "conv":
        return {1: "nor_conv_1x1", 3: "nor_conv_3x3"}.get(p["kernel"])
    return {"zero": "none", "identity": "skip_connect", "pool": "avg_pool_3x3"}.get(op)


def _nb201_args(graph: ArchGraph, tag: str, name: str, shapes: dict[str, Shape]) -> dict[str, Any] | None:
    genotype = []
    for to, src in nb201.EDGES:
        node = f"{name}.edge{to}<-{src}"
        op = _nb201_op(graph, node) if node in graph.graph else None
        if op is None:
            return None
        genotype.append((to, src, op))
    return {"channels": shapes[graph.inputs_of(f"{name}.edge1<-0")[0]].channels, "genotype": tuple(genotype)}


def _nb201_cell(graph: ArchGraph, sources: list[str], name: str, channels: int,
                genotype: tuple[tuple[int, int, str], ...]) -> str:
    arch = tuple(op for _, _, op in genotype)
    return nb201._cell(graph, sources[0], name, arch, channels)  # type: ignore[arg-type]


def _nb201_path(suffix: str, args: dict[str, Any]) -> str:
    match = re.fullmatch(r"edge(\d)<-(\d)", suffix)
    if match is None:
        return suffix.replace(".", "_")
    return f"edges.{nb201.EDGES.index((int(match[1]), int(match[2])))}"


RESNET_BASIC = '''
class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201 reduction (AutoDL ``ResNetBasicblock``, stride 2): ReLU-conv-BN twice, plus a 2x2
    average pool -> 1x1 conv shortcut. (B, in_ch, H, W) -> (B, out, H/2, W/2)."""

    def __init__(self, in_ch: int, out: int) -> None:
        super().__init__()
        self.conv_a = relu_conv_bn(in_ch, out, 3, 2)
        self.conv_b = relu_conv_bn(out, out, 3)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(in_ch, out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)
'''


def _reduction_args(graph: ArchGraph, tag: str, name: str, shapes: dict[str, Shape]) -> dict[str, Any] | None:
    node = f"{name}.conv_a"
    return {"out": graph.params(node)["out"]} if node in graph.graph and graph.op(node) == "conv" else None


# ----------------------------------------------------------------------------- DARTS
DARTS_OPS = {
    "max_pool_3x3": "lambda c, stride: nn.MaxPool2d(3, stride=stride, padding=1)",
    "avg_pool_3x3": "lambda c, stride: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)",
    "skip_connect": "lambda c, stride: nn.Identity() if stride == 1 else FactorizedReduce(c, c)",
    "sep_conv_3x3": "lambda c, stride: sep_conv(c, c, 3, stride)",
    "sep_conv_5x5": "lambda c, stride: sep_conv(c, c, 5, stride)",
    "dil_conv_3x3": "lambda c, stride: sep_conv(c, c, 3, stride, dilation=2, repeats=1)",
    "dil_conv_5x5": "lambda c, stride: sep_conv(c, c, 5, stride, dilation=2, repeats=1)",
}

DARTS_CELL = '''
class Cell(nn.Module):
    """DARTS cell (quark0/darts ``Cell``): node k + 2 = op(state a) + op(state b) for its two ``genotype``
    pairs (op, input); states 0 and 1 are the preprocessed inputs; the output concatenates the ``concat``
    states. (B, c_prev_prev, H0, W0), (B, c_prev, H, W) -> (B, len(concat) * channels, H/r, W/r), r = 2 in
    a reduction cell (stride 2 on the edges from states 0 and 1)."""

    def __init__(self, genotype: tuple[tuple[str, int], ...], c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool = False, reduction_prev: bool = False, concat: tuple[int, ...] = (2, 3, 4, 5)) -> None:
        super().__init__()
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, channels)
        else:
            self.preprocess0 = relu_conv_bn(c_prev_prev, channels, 1)
        self.preprocess1 = relu_conv_bn(c_prev, channels, 1)
        self.inputs = tuple(i for _, i in genotype)
        self.concat = concat
        self.ops = nn.ModuleList(OPS[op](channels, 2 if reduction and i < 2 else 1) for op, i in genotype)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in range(0, len(self.ops), 2):
            a, b = self.inputs[k], self.inputs[k + 1]
            states.append(self.ops[k](states[a]) + self.ops[k + 1](states[b]))
        return torch.cat([states[i] for i in self.concat], dim=1)
'''


def _darts_text(instances: list[dict[str, Any]] | None) -> str:
    return _ops_table(DARTS_OPS, _used(instances, lambda genotype: [op for op, _ in genotype])) + DARTS_CELL


def _darts_args(graph: ArchGraph, tag: str, name: str, shapes: dict[str, Shape]) -> dict[str, Any] | None:
    p0, p1, concat = f"{name}.preprocess0", f"{name}.preprocess1", f"{name}.concat"
    if not all(n in graph.graph for n in (p0, p1, concat)):
        return None
    state = {p0: 0, p1: 1, **{f"{name}.node{k}": k for k in range(2, 2 + darts.STEPS)}}
    members = [n for n in graph.graph if graph.attrs(n)["block"] == tag]
    pairs = []
    for k in range(2, 2 + darts.STEPS):
        for slot in (0, 1):
            prefix = f"{name}.node{k}.{slot}."
            edge = [n for n in members if n.startswith(prefix)]
            if len(edge) != 1 or graph.inputs_of(edge[0])[0] not in state:
                return None
            pairs.append((edge[0][len(prefix):], state[graph.inputs_of(edge[0])[0]]))
    if not all(s in state for s in graph.inputs_of(concat)):
        return None
    return {"genotype": tuple(pairs), "concat": tuple(state[s] for s in graph.inputs_of(concat)),
            "channels": graph.params(p1)["out"], "reduction": tag.startswith("darts_reduce_cell:"),
            "reduction_prev": graph.op(p0) == "factorized_reduce"}


def _darts_cell(graph: ArchGraph, sources: list[str], name: str, genotype: tuple[tuple[str, int], ...],
                concat: tuple[int, ...], channels: int, reduction: bool, reduction_prev: bool) -> str:
    cells = darts.Genotype(genotype, concat, genotype, concat)
    return darts._cell(graph, name, sources[0], sources[1], cells, channels, reduction, reduction_prev)


def _darts_sources(graph: ArchGraph, name: str, members: set[str]) -> list[str] | None:
    nodes = (f"{name}.preprocess0", f"{name}.preprocess1")
    if not all(n in members for n in nodes):
        return None
    return [graph.inputs_of(n)[0] for n in nodes]


def _darts_ctor(args: dict[str, Any], shapes: list[Shape]) -> dict[str, Any]:
    return {"genotype": args["genotype"], "c_prev_prev": shapes[0].channels, "c_prev": shapes[1].channels,
            "channels": args["channels"], "reduction": args["reduction"], "reduction_prev": args["reduction_prev"],
            "concat": args["concat"]}


def _darts_path(suffix: str, args: dict[str, Any]) -> str:
    match = re.fullmatch(r"node(\d+)\.([01])\..+", suffix)
    return f"ops.{2 * (int(match[1]) - 2) + int(match[2])}" if match else suffix


def _darts_constant(param: str, kwargs: dict[str, Any]) -> str:
    if param == "genotype":
        return "REDUCE" if kwargs["reduction"] else "NORMAL"
    return param.upper()


# ----------------------------------------------------------------------------- COMBO's binary space
BINARY_OPS = {
    "identity": "lambda c: nn.Identity()",
    "max_pool_3x3": "lambda c: nn.MaxPool2d(3, stride=1, padding=1)",
    "conv_3x3": "lambda c: nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())",
    "conv_5x5": "lambda c: nn.Sequential(nn.Conv2d(c, c, 5, padding=2), nn.BatchNorm2d(c), nn.ReLU())",
}

BINARY_CELL = '''
class Cell(nn.Module):
    """COMBO binary-space cell: node k computes op(sum of the nodes it reads) for its ``genotype`` entry
    (op, inputs); node 0 is the input, the last entry the output. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, genotype: tuple[tuple[str, tuple[int, ...]], ...]) -> None:
        super().__init__()
        self.inputs = tuple(inputs for _, inputs in genotype)
        self.ops = nn.ModuleList(OPS[op](channels) for op, _ in genotype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for op, inputs in zip(self.ops, self.inputs, strict=True):
            nodes.append(op(sum(nodes[i] for i in inputs)))
        return nodes[-1]
'''


def _binary_text(instances: list[dict[str, Any]] | None) -> str:
    return _ops_table(BINARY_OPS, _used(instances, lambda genotype: [op for op, _ in genotype])) + BINARY_CELL


def _binary_node_op(graph: ArchGraph, node: str) -> str | None:
    op, p = graph.op(node), graph.params(node)
    if op == "pool":
        return "max_pool_3x3"
    return {3: "conv_3x3", 5: "conv_5x5"}.get(p["kernel"]) if op == "conv" else None


def _binary_args(graph: ArchGraph, tag: str, name: str, shapes: dict[str, Shape]) -> dict[str, Any] | None:
    """Genotype entries (op, inputs) for the kept compute nodes in order, then the output; an input is 0
    (the cell input) or an entry (1-based). ``nodes`` are the entries' node numbers in the space's cell.
    None when the nodes are not the space's (or the cell is the empty one, a zero map)."""
    out = f"{name}.node{binary.OUTPUT}"
    if out not in graph.graph:
        return None
    index: dict[str, int] = {}
    entries: list[tuple[str, list[str]]] = []
    nodes = []
    for k in (*binary.COMPUTE_NODES, binary.OUTPUT):
        summed = out if k == binary.OUTPUT else f"{name}.node{k}.in"
        if summed not in graph.graph:
            continue
        node = f"{name}.node{k}"
        op = "identity" if k == binary.OUTPUT or node not in graph.graph else _binary_node_op(graph, node)
        if op is None:
            return None
        entries.append((op, graph.inputs_of(summed)))
        nodes.append(k)
        index[summed] = index[node] = len(entries)
    members = {n for n in graph.graph if graph.attrs(n)["block"] == tag}
    if len({s for _, inputs in entries for s in inputs if s not in members}) != 1:
        return None
    genotype = tuple((op, tuple(index.get(s, 0) for s in inputs)) for op, inputs in entries)
    return {"channels": shapes[out].channels, "genotype": genotype, "nodes": tuple(nodes)}


def _binary_cell(graph: ArchGraph, sources: list[str], name: str, channels: int,
                 genotype: tuple[tuple[str, tuple[int, ...]], ...], nodes: tuple[int, ...]) -> str:
    """Rebuild the cell from the bits that ``genotype`` on ``nodes`` stands for."""
    types = dict(zip(nodes, (op for op, _ in genotype), strict=True))
    bits: list[int] = []
    for k in binary.COMPUTE_NODES:
        bits += next(b for b, t in binary.NODE_TYPES.items() if t == types.get(k, "identity"))
    number = (binary.INPUT, *nodes)
    edges = {(number[i], k) for k, (_, inputs) in zip(nodes, genotype, strict=True) for i in inputs}
    bits += [int(e in edges) for e in binary.EDGES]
    return binary._cell(graph, sources[0], name, tuple(bits), channels)


def _binary_path(suffix: str, args: dict[str, Any]) -> str:
    match = re.fullmatch(r"node(\d)", suffix)
    return f"ops.{args['nodes'].index(int(match[1]))}" if match else suffix.replace(".", "_")


CELLS: tuple[BlockSpec, ...] = (
    BlockSpec("nb201_cell", "Cell", _nb201_text, _nb201_cell, lambda a, s: dict(a), args=_nb201_args,
              paths=_nb201_path),
    BlockSpec("residual", "ResNetBasicBlock", RESNET_BASIC, on_one_input(nb201._reduction_block),
              lambda a, s: {"in_ch": s[0].channels, **a}, args=_reduction_args,
              renames=(("downsample.pool", "downsample.0"), ("downsample.conv", "downsample.1"))),
    BlockSpec("darts_normal_cell", "Cell", _darts_text, _darts_cell, _darts_ctor, args=_darts_args,
              sources=_darts_sources, paths=_darts_path, constant=_darts_constant),
    BlockSpec("binary_cell", "Cell", _binary_text, _binary_cell,
              lambda a, s: {"channels": a["channels"], "genotype": a["genotype"]}, args=_binary_args,
              paths=_binary_path),
)
"""Cells (and NAS-Bench-201's reduction block) exported as classes; DARTS reduction cells use the normal
cell's spec (one class, ``reduction=True``)."""
