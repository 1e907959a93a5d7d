"""nb201 |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|: standalone
    PyTorch model exported by nas.

Architecture hash: 0e96e76b70d603cd31ba1e2614d7297395409c5c5bbe5ac86a67d9c8e58f8650
Model: Nb201Best6111, input (B, 3, 32, 32) -> output (B, 10); 151 graph nodes.

arch: |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|
nb201_index: 6111
weights: none (seed-0 initialisation); NAS-Bench-201 reports 94.37% CIFAR-10 test accuracy

timm's contract: ``create_model(pretrained=False, **kwargs)``; inputs are raw pixels x normalised per channel as
    (x / max_pixel_value - mean) / std with the values in PRETRAINED_CFG.
"""

from typing import Any

import torch
from torch import nn

PRETRAINED_CFG = {
    "file": None,
    "arch_hash": "0e96e76b70d603cd31ba1e2614d7297395409c5c5bbe5ac86a67d9c8e58f8650",
    "num_classes": 10,
    "input_size": (3, 32, 32),
    "dataset": "cifar10",
    "max_pixel_value": 255.0,
    "mean": (0.4913725490196078, 0.4823529411764706, 0.4466666666666667),
    "std": (0.24705882352941178, 0.24352941176470588, 0.2615686274509804),
    "first_conv": "stem.0",
    "classifier": "head_fc",
}

GENOTYPE = ((1, 0, "nor_conv_3x3"), (2, 0, "nor_conv_3x3"), (2, 1, "nor_conv_3x3"), (3, 0, "skip_connect"),
            (3, 1, "nor_conv_3x3"), (3, 2, "nor_conv_1x1"))


def relu_conv_bn(in_ch: int, out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """ReLU -> conv k x k ('same' padding, no bias) -> BN: (B, in_ch, H, W) -> (B, out, H/stride, W/stride)."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(in_ch, out, kernel, stride, (kernel - 1) // 2, bias=False),
                         nn.BatchNorm2d(out))


OPS = {
    "skip_connect": lambda c: nn.Identity(),
    "nor_conv_1x1": lambda c: relu_conv_bn(c, c, 1),
    "nor_conv_3x3": lambda c: relu_conv_bn(c, c, 3),
}


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


class Nb201Best6111(nn.Module):
    """(B, 3, 32, 32) -> (B, 10); ``forward_head(x, pre_logits=True)`` gives (B, 64)."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 64
        self.pretrained_cfg = self.default_cfg = dict(PRETRAINED_CFG)
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 16, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.stage1 = nn.Sequential(*[Cell(channels=16, genotype=GENOTYPE) for _ in range(5)])
        self.reduce1 = ResNetBasicBlock(in_ch=16, out=32)
        self.stage2 = nn.Sequential(*[Cell(channels=32, genotype=GENOTYPE) for _ in range(5)])
        self.reduce2 = ResNetBasicBlock(in_ch=32, out=64)
        self.stage3 = nn.Sequential(*[Cell(channels=64, genotype=GENOTYPE) for _ in range(5)])
        self.lastact = nn.Sequential(nn.BatchNorm2d(64), nn.ReLU())
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
        """(B, 3, 32, 32) -> (B, 64, 8, 8)."""
        x = self.stem(x)
        x = self.stage1(x)
        x = self.reduce1(x)
        x = self.stage2(x)
        x = self.reduce2(x)
        x = self.stage3(x)
        return self.lastact(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 64, 8, 8) -> (B, 10) (the classifier's input with ``pre_logits``)."""
        x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head_fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) -> (B, 10)."""
        return self.forward_head(self.forward_features(x))


def create_model(pretrained: bool = False, **kwargs: Any) -> Nb201Best6111:
    """``Nb201Best6111(**kwargs)``; it was exported without trained weights (PRETRAINED_CFG['file'] is None)."""
    if pretrained:
        raise FileNotFoundError("Nb201Best6111 was exported without trained weights; use pretrained=False")
    return Nb201Best6111(**kwargs)


if __name__ == "__main__":
    print(create_model().eval()(torch.randn(2, 3, 32, 32)).shape)
