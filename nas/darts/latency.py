"""A differentiable latency term for DARTS (ProxylessNAS / FBNet style): the expected latency of the
supernet's mixed operations under ``softmax(α)``.

Every candidate op of every mixed op is timed once, before the search, on the search's device with
the trial latency protocol (:func:`nas.trainer.measure_latency_ms`: batch 1, eval mode, median of
repeats) at the input shape it sees in the network; ops of the same structure and shapes are timed
once. :func:`latency_table` finds which alpha row drives each mixed op by a forward pass in which
``arch_weights`` returns coded rows, so it needs no knowledge of the network's wiring: it works for
the DARTS network and every generic cell network (:mod:`nas.darts.cells`) alike. The table is
``costs[name]`` (rows, ops) in milliseconds, summed over the mixed ops that share a row (the cells
of one type), so that

    E[latency](α) = Σ_name Σ_{r,o} softmax(α_name)[r, o] · costs[name][r, o]

is the expected latency of all mixed ops, linear in the op weights. The search adds
``weight · E[latency] / E_uniform`` to the validation loss of the architecture step, where
``E_uniform`` is the expected latency at uniform op weights (the initial supernet): the weight is
dimensionless, so one value means the same trade-off on any device (``weight`` 0.1: cutting the
expected latency by a tenth of the initial one is worth 0.01 nats of validation loss). The term
does not depend on the network's weights, so its gradient is added exactly in first and second
order alike. In a data-parallel search every worker times the ops; the tables are averaged so all
workers use the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nas.darts.architect import grad
from nas.darts.distributed import SINGLE, ReplicaGroup
from nas.darts.supernet import MixedOp, SearchNetwork
from nas.trainer import measure_latency_ms


@dataclass
class LatencyTable:
    """Per alpha name, the summed latency (ms) of each op choice of each row: (rows, ops) tensors."""

    costs: dict[str, torch.Tensor]

    def expected_ms(self, alphas: dict[str, torch.Tensor]) -> torch.Tensor:
        """Expected latency (ms, a 0-d tensor, differentiable in ``alphas``) of the mixed ops."""
        total = sum((F.softmax(alphas[name], dim=-1) * cost.to(alphas[name])).sum()
                    for name, cost in self.costs.items())
        return torch.as_tensor(total)

    def uniform_ms(self) -> float:
        """Expected latency at uniform op weights (the initial supernet's, up to its 1e-3 alphas)."""
        return float(sum(cost.mean(dim=-1).sum() for cost in self.costs.values()))

    def penalty_gradients(self, net: SearchNetwork, weight: float) -> tuple[float, list[torch.Tensor]]:
        """(expected latency in ms, ``∇_α weight · E[latency] / E_uniform``, one per ``net.arch_parameters()``)."""
        alphas = dict(net.alphas.items())
        with torch.enable_grad():
            expected = self.expected_ms(alphas)
            scale = weight / max(self.uniform_ms(), 1e-12)
            grads = grad(expected * scale, net.arch_parameters())
        return float(expected.detach()), grads

    def to_dict(self) -> dict[str, list[list[float]]]:
        return {name: [[round(float(v), 6) for v in row] for row in cost] for name, cost in self.costs.items()}


@torch.no_grad()
def latency_table(net: SearchNetwork, input_shape: tuple[int, ...], device: torch.device | str,
                  repeats: int = 20, replicas: ReplicaGroup = SINGLE) -> LatencyTable:
    """Time every candidate op of every mixed op of ``net`` at its input shape within a
    (1, *input_shape) forward; see the module docstring.

    ``net`` must not be wrapped for data parallelism yet (the probing forward runs on this
    process alone). Its mode and state are left as they were; the global RNG is not used.
    """
    rows = {name: alpha.shape[0] for name, alpha in net.alphas.items()}
    names = list(rows)
    codes: dict[int, tuple[str, int]] = {}
    coded: dict[str, torch.Tensor] = {}
    for name in names:  # every op weight of row r of `name` is the row's code: 1, 2, ...
        base = len(codes) + 1
        for r in range(rows[name]):
            codes[base + r] = (name, r)
        ops = net.alphas[name].shape[1]
        coded[name] = (base + torch.arange(rows[name], dtype=torch.float32)).unsqueeze(1).expand(-1, ops)
        coded[name] = coded[name].to(net.alphas[name].device)
    calls: list[tuple[MixedOp, torch.Size, str, int]] = []

    def record(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x, weights = args[0], args[1]
        calls.append((module, x.shape, *codes[round(float(weights[0]))]))  # type: ignore[arg-type]

    hooks = [m.register_forward_pre_hook(record) for m in net.modules() if isinstance(m, MixedOp)]
    was_training = net.training
    net.arch_weights = lambda: coded  # type: ignore[method-assign]
    try:
        net.eval()
        probe = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
        net(probe)
    finally:
        del net.arch_weights
        for hook in hooks:
            hook.remove()
        net.train(was_training)
    costs = {name: torch.zeros(rows[name], net.alphas[name].shape[1], dtype=torch.float64) for name in names}
    timed: dict[tuple[str, tuple[int, ...], tuple[int, ...]], float] = {}
    for module, shape, name, row in calls:
        x = torch.zeros(shape, device=device)
        for o, op in enumerate(module.ops):
            key = (repr(op), tuple(shape), tuple(op.eval()(x).shape))  # e.g. Zero's stride shows in its output
            if key not in timed:
                timed[key] = measure_latency_ms(op, tuple(shape[1:]), device, repeats)
            op.train(was_training)
            costs[name][row, o] += timed[key]
    if replicas.distributed:
        flat = replicas.sum([costs[name].to(replicas.device) for name in names])
        costs = {name: (t / replicas.world_size).cpu() for name, t in zip(names, flat, strict=True)}
    return LatencyTable(costs)
