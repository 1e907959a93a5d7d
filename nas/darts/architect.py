"""The architecture gradient of DARTS (quark0/darts ``architect.py``) and the Hessian eigenvalue of
DARTS-ES (Zela et al., ICLR 2020).

* First order ("DARTS V1"): ``∇_α L_val(w, α)``.
* Second order ("DARTS V2"): the gradient through one virtual SGD step
  ``w' = w - ξ (μ m + ∇_w L_train(w, α) + λ w)`` (ξ the current weight learning rate, μ the
  momentum, m the weight optimizer's momentum buffer, λ the weight decay; no clipping):
  ``∇_α L_val(w', α) - ξ · HVP`` with the Hessian-vector product by central finite differences,
  ``HVP = (∇_α L_train(w + R v, α) - ∇_α L_train(w - R v, α)) / 2R``, ``v = ∇_w' L_val(w', α)``,
  ``R = 0.01 / ‖v‖``. The network's weights are exactly restored afterwards, and so are its
  batch-norm running statistics after the forward at ``w'`` (the reference code runs that forward
  on a throw-away copy of the model). Only one autograd graph is alive at a time, so the peak
  memory is about that of a first-order step.
* :func:`dominant_hessian_eigenvalue`: the largest eigenvalue of ``∇²_α L_val`` by power
  iteration on exact Hessian-vector products (double backward).

Inputs are batches ``x (B, C, H, W)``, ``y (B,)``; gradients are returned per alpha, same shapes.
In a data-parallel search (:mod:`nas.darts.distributed`) they are this worker's shard of each global
batch, whose size is given (``global_batch``, ``train_batch``, ``valid_batch``): losses are divided by
it and every gradient (and every loss returned) is summed over the ``replicas`` before it is used, so
each function returns exactly the single-process value on every worker.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nas.darts.distributed import SINGLE, ReplicaGroup, sharded_cross_entropy
from nas.darts.supernet import SearchNetwork


def loss_on(net: SearchNetwork, x: torch.Tensor, y: torch.Tensor,
            global_batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy loss, logits (B, classes)): the mean over the batch, or with ``global_batch`` the
    sum over this shard divided by the global batch size."""
    logits = net(x)
    if global_batch is None:
        return F.cross_entropy(logits, y), logits
    return sharded_cross_entropy(logits, y, global_batch), logits


def grad(loss: torch.Tensor, params: list[torch.Tensor], **kwargs: object) -> list[torch.Tensor]:
    """``torch.autograd.grad`` with zeros for parameters the loss does not use (e.g. the normal-cell
    alphas of a network made only of reduction cells)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True, **kwargs)  # type: ignore[arg-type]
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _summed(replicas: ReplicaGroup, grads: list[torch.Tensor], loss: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    """(loss, gradients), each summed over the replicas in one collective."""
    *summed, total = replicas.sum([*grads, loss.detach().reshape(1)])
    return float(total), summed


def first_order_grad(net: SearchNetwork, x_v: torch.Tensor, y_v: torch.Tensor, replicas: ReplicaGroup = SINGLE,
                     global_batch: int | None = None) -> tuple[float, list[torch.Tensor]]:
    """(validation loss, ``∇_α L_val(w, α)``)."""
    loss, _ = loss_on(net, x_v, y_v, global_batch or len(y_v))
    return _summed(replicas, grad(loss, net.arch_parameters()), loss)


def _add_(params: list[torch.Tensor], vectors: list[torch.Tensor], alpha: float) -> None:
    with torch.no_grad():
        torch._foreach_add_(params, vectors, alpha=alpha)


def second_order_grad(net: SearchNetwork, x_t: torch.Tensor, y_t: torch.Tensor, x_v: torch.Tensor,
                      y_v: torch.Tensor, lr: float, momentum: float, weight_decay: float,
                      momentum_buffers: list[torch.Tensor | None], replicas: ReplicaGroup = SINGLE,
                      train_batch: int | None = None,
                      valid_batch: int | None = None) -> tuple[float, list[torch.Tensor]]:
    """(validation loss at w', the unrolled architecture gradient); see the module docstring.

    ``momentum_buffers``: the weight optimizer's buffer per weight (None before its first step).
    """
    weights = list(net.weight_parameters())
    alphas = net.arch_parameters()
    original = [w.detach().clone() for w in weights]
    train_batch = train_batch or len(y_t)
    # virtual step w' = w - ξ (μ m + g + λ w)
    loss_t, _ = loss_on(net, x_t, y_t, train_batch)
    grads = replicas.sum(grad(loss_t, weights))
    with torch.no_grad():
        for w, g, m in zip(weights, grads, momentum_buffers, strict=True):
            step = g + weight_decay * w
            if m is not None:
                step = step + momentum * m
            w.sub_(lr * step)
    del grads, loss_t
    stats = [b.detach().clone() for b in net.buffers()]
    loss_v, _ = loss_on(net, x_v, y_v, valid_batch or len(y_v))
    loss_value, unrolled = _summed(replicas, grad(loss_v, alphas + weights), loss_v)
    d_alpha, v = list(unrolled[: len(alphas)]), list(unrolled[len(alphas):])
    del unrolled
    with torch.no_grad():
        for b, saved in zip(net.buffers(), stats, strict=True):
            b.copy_(saved)
        for w, saved in zip(weights, original, strict=True):
            w.copy_(saved)
    hvp = finite_difference_hvp(net, weights, v, x_t, y_t, replicas, train_batch)
    for w, saved in zip(weights, original, strict=True):  # exact restore (no float drift from ±R v)
        w.data.copy_(saved)
    return loss_value, [da - lr * h for da, h in zip(d_alpha, hvp, strict=True)]


def finite_difference_hvp(net: SearchNetwork, weights: list[torch.Tensor], v: list[torch.Tensor], x: torch.Tensor,
                          y: torch.Tensor, replicas: ReplicaGroup = SINGLE,
                          global_batch: int | None = None) -> list[torch.Tensor]:
    """``∇²_{α,w} L(w, α) · v`` by central differences with ``R = 0.01 / ‖v‖`` (weights moved and put back).

    ``v``: the same on every replica; the two gradients are summed over the replicas.
    """
    norm = math.sqrt(sum(float((t * t).sum()) for t in v))
    r = 0.01 / norm if norm > 0 else 0.01
    alphas = net.arch_parameters()
    global_batch = global_batch or len(y)
    _add_(weights, v, r)
    loss_plus, _ = loss_on(net, x, y, global_batch)
    g_plus = grad(loss_plus, alphas)
    _add_(weights, v, -2.0 * r)
    loss_minus, _ = loss_on(net, x, y, global_batch)
    g_minus = grad(loss_minus, alphas)
    _add_(weights, v, r)
    summed = replicas.sum([*g_plus, *g_minus])
    g_plus, g_minus = summed[: len(alphas)], summed[len(alphas):]
    return [(p - m) / (2.0 * r) for p, m in zip(g_plus, g_minus, strict=True)]


def dominant_hessian_eigenvalue(net: SearchNetwork, x: torch.Tensor, y: torch.Tensor, iterations: int = 20,
                                generator: torch.Generator | None = None) -> float:
    """Largest eigenvalue of ``∇²_α L(w, α)`` on the batch (power iteration, exact HVPs).

    The network is put in eval mode for the duration (fixed batch-norm statistics make the loss a
    fixed function of α) and restored afterwards.
    """
    was_training = net.training
    net.eval()
    try:
        loss, _ = loss_on(net, x, y)
        first = torch.autograd.grad(loss, net.arch_parameters(), create_graph=True, allow_unused=True)
        pairs = [(a, g) for a, g in zip(net.arch_parameters(), first, strict=True) if g is not None]
        alphas, grads = [a for a, _ in pairs], [g for _, g in pairs]
        vec = [torch.randn(a.shape, generator=generator).to(a) for a in alphas]
        eigen = 0.0
        for _ in range(iterations):
            norm = math.sqrt(sum(float((t * t).sum()) for t in vec))
            if norm == 0 or not math.isfinite(norm):
                break
            vec = [t / norm for t in vec]
            hv = grad(grads, alphas, grad_outputs=vec, retain_graph=True)  # type: ignore[arg-type]
            eigen = float(sum((h * t).sum() for h, t in zip(hv, vec, strict=True)))
            vec = [h.detach() for h in hv]
            if not math.isfinite(eigen):
                break
        return eigen
    finally:
        net.train(was_training)
