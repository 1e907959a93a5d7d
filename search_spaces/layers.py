"""PyTorch modules for the IR's ops (see :mod:`search_spaces.ops` for parameters and shapes).

``build_op(op, in_shape, params)`` returns the module for one node; ``HighwayGate`` is the learned
merge of the gate. Tensor shapes below include the batch dimension B.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from search_spaces.ops import Shape, conv_padding


def activation(fn: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "silu": nn.SiLU}[fn]()


def conv_unit(in_ch: int, p: dict[str, Any]) -> nn.Module:
    """Conv with BN/activation in ``p['order']``: (B, C_in, H, W) -> (B, out, H', W')."""
    conv = nn.Conv2d(in_ch, p["out"], p["kernel"], p["stride"], conv_padding(p), p["dilation"],
                     p["groups"], bias=p["bias"])
    layers: list[nn.Module] = []
    channels = in_ch
    for step in p["order"].split("-"):
        if step == "conv":
            layers.append(conv)
            channels = p["out"]
        elif step == "bn":
            layers.append(nn.BatchNorm2d(channels, eps=p["bn_eps"]))
        else:
            layers.append(activation(p["act"]))
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def sep_conv(in_ch: int, p: dict[str, Any], affine: bool = True) -> nn.Sequential:
    """DARTS SepConv (repeats=2) / DilConv (repeats=1): (ReLU, depthwise, pointwise, BN) x repeats.

    ``affine=False`` gives parameter-free BN, as in the DARTS search network.
    """
    k, d = p["kernel"], p["dilation"]
    pad = (k - 1) // 2 * d
    layers: list[nn.Module] = []
    for r in range(p["repeats"]):
        out = p["out"] if r == p["repeats"] - 1 else in_ch
        stride = p["stride"] if r == 0 else 1
        layers += [nn.ReLU(), nn.Conv2d(in_ch, in_ch, k, stride, pad, d, groups=in_ch, bias=False),
                   nn.Conv2d(in_ch, out, 1, bias=False), nn.BatchNorm2d(out, affine=affine)]
    return nn.Sequential(*layers)


class FactorizedReduce(nn.Module):
    """(B, C, H, W) -> (B, out, H/2, W/2): ReLU, two offset stride-2 1x1 convs concatenated, BN.

    ``affine=False`` gives parameter-free BN, as in the DARTS search network.
    """

    def __init__(self, in_ch: int, out: int, affine: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(in_ch, out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(in_ch, out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class Zero(nn.Module):
    """Zeros shaped like the (strided) input: the 'none' op."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """(length, dim) fixed sine/cosine positional encoding (Vaswani et al.)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    enc = torch.zeros(length, dim)
    enc[:, 0::2] = torch.sin(position * freq)
    enc[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return enc


class PositionalEncoding(nn.Module):
    """Adds a learned or sinusoidal (length, dim) encoding to (B, length, dim) tokens."""

    def __init__(self, kind: str, length: int, dim: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.pos = nn.Parameter(torch.zeros(1, length, dim))
            nn.init.trunc_normal_(self.pos, std=0.02)
        elif kind == "sinusoidal":
            self.register_buffer("pos", sinusoidal_encoding(length, dim).unsqueeze(0), persistent=False)
        else:
            self.pos = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.pos is None else x + self.pos


class SelfAttention(nn.Module):
    """Multi-head self-attention with output projection.

    Tokens (B, N, D) -> (B, N, D), or a map (B, C, H, W) -> (B, C, H, W) attending over its H*W
    positions; ``pos`` adds a positional encoding to the input first (so to queries, keys and values).
    """

    def __init__(self, shape: Shape, heads: int, qkv_bias: bool, pos: str) -> None:
        super().__init__()
        dim = shape.channels
        length = shape.dims[1] * shape.dims[2] if shape.kind == "map" else shape.dims[0]
        self.spatial = shape.kind == "map"
        self.heads = heads
        self.pos = PositionalEncoding(pos, length, dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial:
            b, c, h, w = x.shape
            x = x.flatten(2).transpose(1, 2)
        x = self.pos(x)
        bsz, n, d = x.shape
        qkv = self.qkv(x).reshape(bsz, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        out = self.proj(out.transpose(1, 2).reshape(bsz, n, d))
        if self.spatial:
            out = out.transpose(1, 2).reshape(b, c, h, w)
        return out


class ToTokens(nn.Module):
    """(B, C, H, W) -> (B, H*W [+1], C): flatten positions, prepend a class token, add positions."""

    def __init__(self, shape: Shape, cls_token: bool, pos: str) -> None:
        super().__init__()
        c, h, w = shape.dims
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c)) if cls_token else None
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.pos = PositionalEncoding(pos, h * w + int(cls_token), c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos(x)


class TokenPool(nn.Module):
    """(B, N, D) -> (B, D): the class token (first) or the mean over tokens."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] if self.kind == "cls" else x.mean(dim=1)


class GlobalPool(nn.Module):
    """(B, C, H, W) -> (B, C) average or max over positions."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if self.kind == "avg" else x.amax(dim=(2, 3))


class HighwayGate(nn.Module):
    """Highway merge: y = H * T + x * (1 - T), T = sigmoid(transform(x)); H, x of equal shape.

    The transform is a k x k conv for maps and a linear layer for tokens/vectors; its bias starts
    at ``bias`` (negative: the layer starts close to carrying x, as in Srivastava et al.).
    """

    def __init__(self, shape: Shape, kernel: int, bias: float) -> None:
        super().__init__()
        c = shape.channels
        if shape.kind == "map":
            self.transform: nn.Module = nn.Conv2d(c, c, kernel, padding=(kernel - 1) // 2)
        else:
            self.transform = nn.Linear(c, c)
        nn.init.constant_(self.transform.bias, bias)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.transform(x))
        return h * t + x * (1.0 - t)


def build_op(op: str, shape: Shape, p: dict[str, Any]) -> nn.Module:
    """Module computing ``op`` with resolved params ``p`` on input of ``shape``."""
    c = shape.channels
    if op == "conv":
        return conv_unit(c, p)
    if op == "sep_conv":
        return sep_conv(c, p)
    if op == "factorized_reduce":
        return FactorizedReduce(c, p["out"])
    if op == "pool":
        stride = p["stride"] or p["kernel"]
        if p["kind"] == "max":
            return nn.MaxPool2d(p["kernel"], stride, p["padding"], ceil_mode=p["ceil_mode"])
        return nn.AvgPool2d(p["kernel"], stride, p["padding"], ceil_mode=p["ceil_mode"],
                            count_include_pad=p["count_include_pad"])
    if op == "adaptive_pool":
        cls = nn.AdaptiveAvgPool2d if p["kind"] == "avg" else nn.AdaptiveMaxPool2d
        return cls(p["size"])
    if op == "global_pool":
        return GlobalPool(p["kind"])
    if op == "flatten":
        return nn.Flatten()
    if op == "linear":
        return nn.Linear(c, p["out"], bias=p["bias"])
    if op == "norm":
        if p["kind"] == "layer":
            return nn.LayerNorm(c, eps=p["eps"])
        return (nn.BatchNorm2d if shape.kind == "map" else nn.BatchNorm1d)(c, eps=p["eps"])
    if op == "act":
        return activation(p["fn"])
    if op == "dropout":
        return nn.Dropout(p["p"])
    if op == "identity":
        return nn.Identity()
    if op == "zero":
        return Zero(p["stride"])
    if op == "mhsa":
        return SelfAttention(shape, p["heads"], p["qkv_bias"], p["pos"])
    if op == "to_tokens":
        return ToTokens(shape, p["cls_token"], p["pos"])
    if op == "token_pool":
        return TokenPool(p["kind"])
    raise KeyError(f"no torch module for op {op!r}")
