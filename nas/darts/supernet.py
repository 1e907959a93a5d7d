"""DARTS search networks (supernets): mixed operations on every cell edge, shared architecture weights.

* :class:`MixedOp`: all candidate ops of one edge, output ``Σ_o w_o · o(x)`` with ``w`` one row of
  ``softmax(α)``; optionally DARTS-'s auxiliary skip ``+ β · skip(x)``.
* :class:`DartsSearchNetwork`: quark0/darts ``model_search.Network`` exactly (stem Conv3x3 to 3C +
  BN; ``layers`` cells, reductions at ``layers // 3`` and ``2 * layers // 3``; 4 intermediate nodes
  per cell, 14 mixed edges; output = concat of the 4 nodes; global pool; linear). Ops are built
  with ``affine=False`` and every pool is followed by ``BatchNorm2d(C, affine=False)``.
  ``alphas["normal"]``, ``alphas["reduce"]``: (14, 8), initialised ``1e-3 · randn``.
* The NAS-Bench-201 search network (AutoDL-Projects ``TinyNetworkDarts``) is the generic cell
  network of :mod:`nas.darts.cells` on NB-201's cell: :class:`nas.darts.cells.NB201SearchNetwork`.

Every network: ``forward(x (B, C_in, H, W)) -> logits (B, num_classes)``, ``alphas`` (an
``nn.ParameterDict``), :meth:`SearchNetwork.weight_parameters` (everything but the alphas),
:meth:`SearchNetwork.arch_weights` (``softmax(α)`` per name) and ``aux_skip_beta`` (0 = off).
``seed`` fixes the alphas; the weights use torch's default initialisation from the global RNG
(:func:`nas.darts.adapters.build_supernet` seeds it in a forked RNG state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.layers import FactorizedReduce, Zero, sep_conv

# ----------------------------------------------------------------------------------------- ops


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv(k, stride, pad, no bias) -> BN: (B, C_in, H, W) -> (B, C_out, H/s, W/s)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, affine: bool = False,
                 track_running_stats: bool = True) -> None:
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track_running_stats))


def darts_op(name: str, channels: int, stride: int) -> nn.Module:
    """One of the 8 DARTS primitives for the search network (affine=False; pools followed by BN)."""
    c = channels
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.Sequential(nn.MaxPool2d(3, stride, 1), nn.BatchNorm2d(c, affine=False))
    if name == "avg_pool_3x3":
        return nn.Sequential(nn.AvgPool2d(3, stride, 1, count_include_pad=False), nn.BatchNorm2d(c, affine=False))
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=False)
    if name in ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"):
        dilated = name.startswith("dil")
        params = {"out": c, "kernel": int(name[-1]), "stride": stride, "dilation": 2 if dilated else 1,
                  "repeats": 1 if dilated else 2}
        return sep_conv(c, params, affine=False)
    raise ValueError(f"unknown DARTS op {name!r}")


def nb201_op(name: str, channels: int, stride: int = 1) -> nn.Module:
    """One NAS-Bench-201 op for the search cell (AutoDL ``OPS`` with affine=False, no running stats)."""
    if stride != 1:
        raise ValueError("NAS-Bench-201 search cells have stride 1")
    if name == "none":
        return Zero(1)
    if name == "skip_connect":
        return nn.Identity()
    if name in ("nor_conv_1x1", "nor_conv_3x3"):
        return ReLUConvBN(channels, channels, int(name[-1]), affine=False, track_running_stats=False)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}")


class MixedOp(nn.Module):
    """All candidate ops of one edge: (B, C, H, W), weights (n_ops,) -> (B, C, H/s, W/s).

    ``aux_skip`` (DARTS-, Chu et al. 2021): a parameter-free skip (identity, or FactorizedReduce for
    stride 2) added with the network's ``aux_skip_beta``, outside the softmax.
    """

    def __init__(self, ops: Sequence[str], channels: int, stride: int, build: Callable[[str, int, int], nn.Module],
                 aux_skip: bool = False) -> None:
        super().__init__()
        self.ops = nn.ModuleList(build(name, channels, stride) for name in ops)
        self.aux = None
        if aux_skip:
            self.aux = nn.Identity() if stride == 1 else FactorizedReduce(channels, channels, affine=False)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, aux_beta: float = 0.0) -> torch.Tensor:
        out = sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))
        if self.aux is not None and aux_beta > 0:
            out = out + aux_beta * self.aux(x)
        return out  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ networks


class SearchNetwork(nn.Module):
    """Base: architecture parameters ``alphas`` kept apart from the weights."""

    alphas: nn.ParameterDict
    aux_skip_beta: float = 0.0

    def _init_alphas(self, shapes: dict[str, tuple[int, int]], generator: torch.Generator) -> None:
        self.alphas = nn.ParameterDict({name: nn.Parameter(1e-3 * torch.randn(*shape, generator=generator))
                                        for name, shape in shapes.items()})

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas.values())

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        ids = {id(p) for p in self.alphas.values()}
        return (p for p in self.parameters() if id(p) not in ids)

    def arch_weights(self) -> dict[str, torch.Tensor]:
        """``softmax(α)`` row-wise, per alpha name: (edges, ops) each."""
        return {name: F.softmax(alpha, dim=-1) for name, alpha in self.alphas.items()}


class DartsSearchCell(nn.Module):
    """quark0/darts search ``Cell`` (steps 4, multiplier 4): s0 (C_pp), s1 (C_p) -> (4C, H/r, W/r)."""

    def __init__(self, ops: Sequence[str], c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
                 aux_skip: bool, steps: int = 4, multiplier: int = 4) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps, self.multiplier = steps, multiplier
        self.preprocess0 = (FactorizedReduce(c_pp, c, affine=False) if reduction_prev
                            else ReLUConvBN(c_pp, c, 1, affine=False))
        self.preprocess1 = ReLUConvBN(c_p, c, 1, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(ops, c, 2 if reduction and j < 2 else 1, darts_op, aux_skip)
            for i in range(steps) for j in range(2 + i))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor, aux_beta: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            s = sum(self.edges[offset + j](h, weights[offset + j], aux_beta) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)  # type: ignore[arg-type]
        return torch.cat(states[-self.multiplier:], dim=1)


class DartsSearchNetwork(SearchNetwork):
    """quark0/darts ``Network(C, num_classes, layers)``: (B, C_in, H, W) -> (B, num_classes)."""

    def __init__(self, ops: Sequence[str], C: int = 16, layers: int = 8, num_classes: int = 10, in_channels: int = 3,
                 steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3, aux_skip: bool = False,
                 seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        c_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(DartsSearchCell(ops, c_pp, c_p, c_curr, reduction, reduction_prev, aux_skip, steps,
                                              multiplier))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_curr
        self.classifier = nn.Linear(c_p, num_classes)
        edges = sum(2 + i for i in range(steps))
        self._init_alphas({"normal": (edges, len(ops)), "reduce": (edges, len(ops))}, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.arch_weights()
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            w = weights["reduce" if cell.reduction else "normal"]
            s0, s1 = s1, cell(s0, s1, w, self.aux_skip_beta)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


class ResNetBasicBlock(nn.Module):
    """AutoDL ``ResNetBasicblock(C, 2C, stride 2)``: (B, C, H, W) -> (B, 2C, H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, affine=True)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, affine=True)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)
