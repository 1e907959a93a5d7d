"""macro[attention(w64,d3,k3,skip) -> conv(w64,d3,k5,skip) -> residual(w32,d3,k3,skip)]: standalone PyTorch model
    exported by nas.

Architecture hash: f66fbb7d315acca33afd4f04c6627d56a69343915410f7d2dde5e3c92ce881c6
Model: DigitsEvolutionBest, input (B, 1, 8, 8) -> output (B, 10); 46 graph nodes.

command: nas search --strategy evolution
params: 549946
run: runs/evolution-macro-digits-seed0
trial: 18
val_acc: 1.0

Build with ``DigitsEvolutionBest()``; trained weights (keys as in this class) load with ``load_state_dict``.
"""

import math

import torch
from torch import nn


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """(length, dim) fixed sine/cosine positional encoding (Vaswani et al.)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    enc = torch.zeros(length, dim)
    enc[:, 0::2] = torch.sin(position * freq)
    enc[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return enc


def conv_bn(in_ch: int, out: int, kernel: int, stride: int = 1, groups: int = 1, eps: float = 1e-5,
            relu: bool = True) -> nn.Sequential:
    """Conv k x k ('same' padding, no bias) -> BN [-> ReLU]: (B, in_ch, H, W) -> (B, out, H/stride, W/stride)."""
    layers = [nn.Conv2d(in_ch, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out, eps=eps)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PositionalEncoding(nn.Module):
    """Adds a learned or sinusoidal (length, dim) encoding to (B, length, dim) tokens ('none': nothing)."""

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

    Tokens (B, N, dim) -> (B, N, dim), or with ``spatial`` a map (B, dim, H, W) -> (B, dim, H, W)
    attending over its H*W positions; ``pos`` adds a positional encoding of ``length`` (N or H*W)
    positions to the input first (so to queries, keys and values).
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, pos: str = "none", length: int = 0,
                 spatial: bool = False) -> None:
        super().__init__()
        self.spatial = spatial
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


class GlobalPool(nn.Module):
    """(B, C, H, W) -> (B, C): average ('avg') or max ('max') over positions."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if self.kind == "avg" else x.amax(dim=(2, 3))


class ResidualBlock(nn.Module):
    """ResNet / ResNeXt block (post-activation, He et al. 2016): relu(F(x) + shortcut(x)).

    basic: k x k -> k x k (out = planes); bottleneck: 1x1 -> k x k (``groups`` = ResNeXt cardinality,
    width = planes * base_width / 64 * groups) -> 1x1 (out = planes * expansion). The shortcut is the
    identity, or a 1x1 stride-s conv + BN projection when the shape changes.
    (B, in_ch, H, W) -> (B, out, H/stride, W/stride).
    """

    def __init__(self, in_ch: int, planes: int, stride: int = 1, bottleneck: bool = False, groups: int = 1,
                 base_width: int = 64, expansion: int = 4, kernel: int = 3) -> None:
        super().__init__()
        if bottleneck:
            width = int(planes * (base_width / 64.0)) * groups
            out_ch = planes * expansion
            self.conv1 = conv_bn(in_ch, width, 1)
            self.conv2 = conv_bn(width, width, kernel, stride, groups=groups)
            self.conv3 = conv_bn(width, out_ch, 1, relu=False)
        else:
            out_ch = planes
            self.conv1 = conv_bn(in_ch, planes, kernel, stride)
            self.conv2 = conv_bn(planes, planes, kernel, relu=False)
            self.conv3 = None
        projected = stride != 1 or in_ch != out_ch
        self.downsample = conv_bn(in_ch, out_ch, 1, stride, relu=False) if projected else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        if self.conv3 is not None:
            out = self.conv3(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: x + MHSA(norm(x)), then + MLP(norm(.)).

    tokens=True (ViT): (B, N, dim) tokens, layer norms (eps 1e-6), MLP = linear-GELU-linear.
    tokens=False: attention over the H*W positions of a (B, dim, H, W) map with positional encoding
    ``pos`` (``length`` = H*W positions), batch norms, MLP = 1x1 conv-ReLU -> 1x1 conv.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, tokens: bool = True, qkv_bias: bool = True,
                 pos: str = "none", length: int = 0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.tokens = tokens
        self.norm1 = nn.LayerNorm(dim, eps=1e-6) if tokens else nn.BatchNorm2d(dim)
        self.attn = SelfAttention(dim, heads, qkv_bias, pos, length, spatial=not tokens)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6) if tokens else nn.BatchNorm2d(dim)
        if tokens:
            self.fc1 = nn.Linear(dim, hidden)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(hidden, dim)
        else:
            self.fc1 = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.ReLU())
            self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.norm1(x)) + x
        h = self.fc1(self.norm2(x))
        if self.tokens:
            h = self.act(h)
        return self.fc2(h) + x


class DigitsEvolutionBest(nn.Module):
    """macro[attention(w64,d3,k3,skip) -> conv(w64,d3,k5,skip) -> residual(w32,d3,k3,skip)]: (B, 1, 8, 8) -> (B, 10).

    Architecture f66fbb7d315acca33afd4f04c6627d56a69343915410f7d2dde5e3c92ce881c6.
    ``forward_features`` returns (B, 32, 2, 2); ``forward_head`` maps that to the output.
    """

    def __init__(self) -> None:
        super().__init__()
        # stem:stem
        self.stem = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        # attention:stage0.0
        self.stage0_embed = nn.Sequential(
            nn.Conv2d(16, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
        self.stage0_0 = AttentionBlock(dim=64, heads=8, mlp_ratio=4.0, tokens=False, qkv_bias=True, pos="learned",
                                       length=64)
        self.stage0_1 = AttentionBlock(dim=64, heads=8, mlp_ratio=4.0, tokens=False, qkv_bias=True, pos="learned",
                                       length=64)
        self.stage0_2 = AttentionBlock(dim=64, heads=8, mlp_ratio=4.0, tokens=False, qkv_bias=True, pos="learned",
                                       length=64)
        # skip:stage0
        self.stage0_skip_proj = nn.Sequential(
            nn.Conv2d(16, 64, kernel_size=1, bias=False),
            nn.BatchNorm2d(64),
        )
        # reduce:stage1
        self.reduce1 = nn.MaxPool2d(kernel_size=2, stride=2)
        # conv:stage1.0
        self.stage1_0_conv = nn.Sequential(
            nn.Conv2d(64, 64, kernel_size=5, padding=2, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
        # conv:stage1.1
        self.stage1_1_conv = nn.Sequential(
            nn.Conv2d(64, 64, kernel_size=5, padding=2, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
        # conv:stage1.2
        self.stage1_2_conv = nn.Sequential(
            nn.Conv2d(64, 64, kernel_size=5, padding=2, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
        # reduce:stage2
        self.reduce2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.stage2_0 = ResidualBlock(in_ch=64, planes=32, stride=1, bottleneck=False, groups=1, base_width=64,
                                      expansion=4, kernel=3)
        self.stage2_1 = ResidualBlock(in_ch=32, planes=32, stride=1, bottleneck=False, groups=1, base_width=64,
                                      expansion=4, kernel=3)
        self.stage2_2 = ResidualBlock(in_ch=32, planes=32, stride=1, bottleneck=False, groups=1, base_width=64,
                                      expansion=4, kernel=3)
        # skip:stage2
        self.stage2_skip_proj = nn.Sequential(
            nn.Conv2d(64, 32, kernel_size=1, bias=False),
            nn.BatchNorm2d(32),
        )
        # head:head
        self.head_pool = GlobalPool("avg")
        self.head_fc = nn.Linear(32, 10)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialisation used during the search: He-normal (fan-out) convs, unit/zero norm affines."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 8, 8) -> features (B, 32, 2, 2)."""
        # stem:stem
        stem = self.stem(x)
        # attention:stage0.0
        x = self.stage0_embed(stem)
        x = self.stage0_0(x)
        x = self.stage0_1(x)
        stage0_2 = self.stage0_2(x)
        # skip:stage0
        stage0_skip_proj = self.stage0_skip_proj(stem)
        x = stage0_2 + stage0_skip_proj
        # reduce:stage1
        reduce1 = self.reduce1(x)
        # conv:stage1.0
        x = self.stage1_0_conv(reduce1)
        # conv:stage1.1
        x = self.stage1_1_conv(x)
        # conv:stage1.2
        stage1_2_conv = self.stage1_2_conv(x)
        # skip:stage1
        x = stage1_2_conv + reduce1
        # reduce:stage2
        reduce2 = self.reduce2(x)
        x = self.stage2_0(reduce2)
        x = self.stage2_1(x)
        stage2_2 = self.stage2_2(x)
        # skip:stage2
        stage2_skip_proj = self.stage2_skip_proj(reduce2)
        x = stage2_2 + stage2_skip_proj
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, 32, 2, 2) -> (B, 10)."""
        # head:head
        x = self.head_pool(features)
        x = self.head_fc(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 8, 8) -> (B, 10)."""
        return self.forward_head(self.forward_features(x))


if __name__ == "__main__":
    model = DigitsEvolutionBest().eval()
    print(model(torch.randn(2, 1, 8, 8)).shape)
