"""Parameter count and FLOPs of any graph, measured on the meta device (no memory, no compute)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from search_spaces.compiler import GraphModule
from search_spaces.ir import ArchGraph


@dataclass(frozen=True)
class Cost:
    """``params``: trainable parameters; ``flops``: torch's count for one sample's forward pass
    (a multiply-add counts 2, as in torch.utils.flop_counter); ``macs`` = flops / 2."""

    params: int
    flops: int

    @property
    def macs(self) -> int:
        return self.flops // 2


def count_params(arch: ArchGraph) -> int:
    with torch.device("meta"):
        module = GraphModule(arch)
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def measure(arch: ArchGraph) -> Cost:
    """Parameters and forward FLOPs of ``arch`` for a batch of one."""
    with torch.device("meta"):
        module = GraphModule(arch).eval()
        x = torch.empty((1, *module.input_shape))
    params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return Cost(params=params, flops=int(counter.get_total_flops()))
