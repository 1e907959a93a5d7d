"""macro[attention(w64,d3,k3,skip) -> conv(w64,d3,k5,skip) -> residual(w32,d3,k3,skip)]: standalone PyTorch model
    exported by nas.

Architecture hash: f66fbb7d315acca33afd4f04c6627d56a69343915410f7d2dde5e3c92ce881c6
Model: DigitsEvolutionBest, input (B, 1, 8, 8) -> output (B, 10); 46 graph nodes.

command: nas search --strategy evolution
params: 549946
run: runs/evolution-macro-digits-seed0
trial: 18
val_acc: 1.0

timm's contract: ``create_model(pretrained=False, **kwargs)``; inputs are raw pixels x normalised per channel as
    (x / max_pixel_value - mean) / std with the values in PRETRAINED_CFG.
"""

import math
from typing import Any

import torch
from torch import nn

PRETRAINED_CFG = {
    "file": "digits_evolution_best.safetensors",
    "arch_hash": "f66fbb7d315acca33afd4f04c6627d56a69343915410f7d2dde5e3c92ce881c6",
    "num_classes": 10,
    "input_size": (1, 8, 8),
    "dataset": "digits",
    "max_pixel_value": 16.0,
    "mean": (0.30580464005470276,),
    "std": (0.37635672092437744,),
    "first_conv": "stem.0",
    "classifier": "head_fc",
}


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
    """(B, 1, 8, 8) -> (B, 10); ``forward_head(x, pre_logits=True)`` gives (B, 32)."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 32
        self.pretrained_cfg = self.default_cfg = dict(PRETRAINED_CFG)
        self.stem = conv_bn(in_chans, 16, 3)
        self.stage0_embed = conv_bn(16, 64, 3)
        self.stage0 = nn.Sequential(*[
            AttentionBlock(dim=64, heads=8, tokens=False, pos="learned", length=64)
            for _ in range(3)
        ])
        self.stage0_skip_proj = conv_bn(16, 64, 1, relu=False)
        self.reduce1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.stage1 = nn.Sequential(*[conv_bn(64, 64, 5) for _ in range(3)])
        self.reduce2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.stage2 = nn.Sequential(*[ResidualBlock(in_ch=in_ch, planes=32) for in_ch in (64, 32, 32)])
        self.stage2_skip_proj = conv_bn(64, 32, 1, relu=False)
        self.head_drop = nn.Dropout(drop_rate)
        self.head_fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialisation used during the search: He-normal (fan-out) convs, unit/zero norm affines."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        return self.head_fc

    def reset_classifier(self, num_classes: int) -> None:
        """A new classifier for ``num_classes`` outputs (0: none, the head returns its input)."""
        self.num_classes = num_classes
        self.head_fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 8, 8) -> (B, 32, 2, 2)."""
        stem = self.stem(x)
        x = self.stage0_embed(stem)
        stage0 = self.stage0(x)
        stage0_skip_proj = self.stage0_skip_proj(stem)
        x = stage0 + stage0_skip_proj
        reduce1 = self.reduce1(x)
        stage1 = self.stage1(reduce1)
        x = stage1 + reduce1
        reduce2 = self.reduce2(x)
        stage2 = self.stage2(reduce2)
        stage2_skip_proj = self.stage2_skip_proj(reduce2)
        return stage2 + stage2_skip_proj

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 32, 2, 2) -> (B, 10) (the classifier's input with ``pre_logits``)."""
        x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head_fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 8, 8) -> (B, 10)."""
        return self.forward_head(self.forward_features(x))


def create_model(pretrained: bool = False, **kwargs: Any) -> DigitsEvolutionBest:
    """``DigitsEvolutionBest(**kwargs)``; ``pretrained`` loads the trained weights (PRETRAINED_CFG['file'], beside
        this file), refused unless saved for this architecture (their arch_hash). With another ``num_classes`` the
        classifier keeps its fresh initialisation (for fine-tuning).
    """
    model = DigitsEvolutionBest(**kwargs)
    if pretrained:
        from pathlib import Path

        from safetensors import safe_open

        path = Path(__file__).with_name(PRETRAINED_CFG["file"])
        with safe_open(str(path), framework="pt") as f:
            found = (f.metadata() or {}).get("arch_hash")
            if found != PRETRAINED_CFG["arch_hash"]:
                raise ValueError(f"{path} holds weights of architecture {found}, not of this one "
                                 f"({PRETRAINED_CFG['arch_hash']})")
            state = {k: f.get_tensor(k) for k in f.keys()}
        if model.num_classes != PRETRAINED_CFG["num_classes"]:  # a new classifier
            head = PRETRAINED_CFG["classifier"] + "."
            state = {k: v for k, v in state.items() if not k.startswith(head)}
            state.update({k: v for k, v in model.state_dict().items() if k.startswith(head)})
        model.load_state_dict(state)
    return model


if __name__ == "__main__":
    print(create_model().eval()(torch.randn(2, 1, 8, 8)).shape)
