"""nb201 |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|: standalone
    PyTorch model exported by nas.

Architecture hash: 0e96e76b70d603cd31ba1e2614d7297395409c5c5bbe5ac86a67d9c8e58f8650
Model: Nb201Best6111, input (B, 3, 32, 32) -> output (B, 10); 151 graph nodes.

arch: |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|
nb201_index: 6111
weights: none (seed-0 initialisation); NAS-Bench-201 reports 94.37% CIFAR-10 test accuracy

Build with ``Nb201Best6111()``; trained weights (keys as in this class) load with ``load_state_dict``.
"""

import torch
from torch import nn


class GlobalPool(nn.Module):
    """(B, C, H, W) -> (B, C): average ('avg') or max ('max') over positions."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if self.kind == "avg" else x.amax(dim=(2, 3))


class Nb201Best6111(nn.Module):
    """nb201 |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|: (B, 3,
        32, 32) -> (B, 10).

    Architecture 0e96e76b70d603cd31ba1e2614d7297395409c5c5bbe5ac86a67d9c8e58f8650.
    ``forward_features`` returns (B, 64, 8, 8); ``forward_head`` maps that to the output.
    """

    def __init__(self) -> None:
        super().__init__()
        # stem:stem
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        # nb201_cell:stage1.cell0
        self.stage1_cell0_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell0_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell0_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell0_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell0_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=1, bias=False),
            nn.BatchNorm2d(16),
        )
        # nb201_cell:stage1.cell1
        self.stage1_cell1_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell1_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell1_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell1_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell1_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=1, bias=False),
            nn.BatchNorm2d(16),
        )
        # nb201_cell:stage1.cell2
        self.stage1_cell2_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell2_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell2_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell2_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell2_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=1, bias=False),
            nn.BatchNorm2d(16),
        )
        # nb201_cell:stage1.cell3
        self.stage1_cell3_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell3_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell3_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell3_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell3_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=1, bias=False),
            nn.BatchNorm2d(16),
        )
        # nb201_cell:stage1.cell4
        self.stage1_cell4_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell4_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell4_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell4_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.stage1_cell4_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=1, bias=False),
            nn.BatchNorm2d(16),
        )
        # residual:reduce1
        self.reduce1_conv_a = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.reduce1_conv_b = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.reduce1_downsample_pool = nn.AvgPool2d(kernel_size=2, stride=2)
        self.reduce1_downsample_conv = nn.Conv2d(16, 32, kernel_size=1, bias=False)
        # nb201_cell:stage2.cell0
        self.stage2_cell0_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell0_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell0_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell0_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell0_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=1, bias=False),
            nn.BatchNorm2d(32),
        )
        # nb201_cell:stage2.cell1
        self.stage2_cell1_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell1_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell1_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell1_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell1_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=1, bias=False),
            nn.BatchNorm2d(32),
        )
        # nb201_cell:stage2.cell2
        self.stage2_cell2_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell2_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell2_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell2_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell2_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=1, bias=False),
            nn.BatchNorm2d(32),
        )
        # nb201_cell:stage2.cell3
        self.stage2_cell3_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell3_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell3_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell3_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell3_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=1, bias=False),
            nn.BatchNorm2d(32),
        )
        # nb201_cell:stage2.cell4
        self.stage2_cell4_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell4_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell4_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell4_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
        )
        self.stage2_cell4_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=1, bias=False),
            nn.BatchNorm2d(32),
        )
        # residual:reduce2
        self.reduce2_conv_a = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.reduce2_conv_b = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.reduce2_downsample_pool = nn.AvgPool2d(kernel_size=2, stride=2)
        self.reduce2_downsample_conv = nn.Conv2d(32, 64, kernel_size=1, bias=False)
        # nb201_cell:stage3.cell0
        self.stage3_cell0_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell0_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell0_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell0_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell0_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=1, bias=False),
            nn.BatchNorm2d(64),
        )
        # nb201_cell:stage3.cell1
        self.stage3_cell1_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell1_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell1_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell1_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell1_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=1, bias=False),
            nn.BatchNorm2d(64),
        )
        # nb201_cell:stage3.cell2
        self.stage3_cell2_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell2_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell2_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell2_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell2_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=1, bias=False),
            nn.BatchNorm2d(64),
        )
        # nb201_cell:stage3.cell3
        self.stage3_cell3_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell3_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell3_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell3_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell3_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=1, bias=False),
            nn.BatchNorm2d(64),
        )
        # nb201_cell:stage3.cell4
        self.stage3_cell4_edge1__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell4_edge2__0 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell4_edge2__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell4_edge3__1 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
        )
        self.stage3_cell4_edge3__2 = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=1, bias=False),
            nn.BatchNorm2d(64),
        )
        # head:head
        self.lastact_bn = nn.BatchNorm2d(64)
        self.lastact_relu = nn.ReLU()
        self.head_pool = GlobalPool("avg")
        self.head_fc = nn.Linear(64, 10)
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
        """(B, 3, 32, 32) -> features (B, 64, 8, 8)."""
        # stem:stem
        stem = self.stem(x)
        # nb201_cell:stage1.cell0
        stage1_cell0_edge1__0 = self.stage1_cell0_edge1__0(stem)
        stage1_cell0_edge2__0 = self.stage1_cell0_edge2__0(stem)
        stage1_cell0_edge2__1 = self.stage1_cell0_edge2__1(stage1_cell0_edge1__0)
        stage1_cell0_node2 = stage1_cell0_edge2__0 + stage1_cell0_edge2__1
        stage1_cell0_edge3__1 = self.stage1_cell0_edge3__1(stage1_cell0_edge1__0)
        stage1_cell0_edge3__2 = self.stage1_cell0_edge3__2(stage1_cell0_node2)
        stage1_cell0_node3 = stem + stage1_cell0_edge3__1 + stage1_cell0_edge3__2
        # nb201_cell:stage1.cell1
        stage1_cell1_edge1__0 = self.stage1_cell1_edge1__0(stage1_cell0_node3)
        stage1_cell1_edge2__0 = self.stage1_cell1_edge2__0(stage1_cell0_node3)
        stage1_cell1_edge2__1 = self.stage1_cell1_edge2__1(stage1_cell1_edge1__0)
        stage1_cell1_node2 = stage1_cell1_edge2__0 + stage1_cell1_edge2__1
        stage1_cell1_edge3__1 = self.stage1_cell1_edge3__1(stage1_cell1_edge1__0)
        stage1_cell1_edge3__2 = self.stage1_cell1_edge3__2(stage1_cell1_node2)
        stage1_cell1_node3 = stage1_cell0_node3 + stage1_cell1_edge3__1 + stage1_cell1_edge3__2
        # nb201_cell:stage1.cell2
        stage1_cell2_edge1__0 = self.stage1_cell2_edge1__0(stage1_cell1_node3)
        stage1_cell2_edge2__0 = self.stage1_cell2_edge2__0(stage1_cell1_node3)
        stage1_cell2_edge2__1 = self.stage1_cell2_edge2__1(stage1_cell2_edge1__0)
        stage1_cell2_node2 = stage1_cell2_edge2__0 + stage1_cell2_edge2__1
        stage1_cell2_edge3__1 = self.stage1_cell2_edge3__1(stage1_cell2_edge1__0)
        stage1_cell2_edge3__2 = self.stage1_cell2_edge3__2(stage1_cell2_node2)
        stage1_cell2_node3 = stage1_cell1_node3 + stage1_cell2_edge3__1 + stage1_cell2_edge3__2
        # nb201_cell:stage1.cell3
        stage1_cell3_edge1__0 = self.stage1_cell3_edge1__0(stage1_cell2_node3)
        stage1_cell3_edge2__0 = self.stage1_cell3_edge2__0(stage1_cell2_node3)
        stage1_cell3_edge2__1 = self.stage1_cell3_edge2__1(stage1_cell3_edge1__0)
        stage1_cell3_node2 = stage1_cell3_edge2__0 + stage1_cell3_edge2__1
        stage1_cell3_edge3__1 = self.stage1_cell3_edge3__1(stage1_cell3_edge1__0)
        stage1_cell3_edge3__2 = self.stage1_cell3_edge3__2(stage1_cell3_node2)
        stage1_cell3_node3 = stage1_cell2_node3 + stage1_cell3_edge3__1 + stage1_cell3_edge3__2
        # nb201_cell:stage1.cell4
        stage1_cell4_edge1__0 = self.stage1_cell4_edge1__0(stage1_cell3_node3)
        stage1_cell4_edge2__0 = self.stage1_cell4_edge2__0(stage1_cell3_node3)
        stage1_cell4_edge2__1 = self.stage1_cell4_edge2__1(stage1_cell4_edge1__0)
        stage1_cell4_node2 = stage1_cell4_edge2__0 + stage1_cell4_edge2__1
        stage1_cell4_edge3__1 = self.stage1_cell4_edge3__1(stage1_cell4_edge1__0)
        stage1_cell4_edge3__2 = self.stage1_cell4_edge3__2(stage1_cell4_node2)
        stage1_cell4_node3 = stage1_cell3_node3 + stage1_cell4_edge3__1 + stage1_cell4_edge3__2
        # residual:reduce1
        x = self.reduce1_conv_a(stage1_cell4_node3)
        reduce1_conv_b = self.reduce1_conv_b(x)
        x = self.reduce1_downsample_pool(stage1_cell4_node3)
        reduce1_downsample_conv = self.reduce1_downsample_conv(x)
        reduce1_add = reduce1_conv_b + reduce1_downsample_conv
        # nb201_cell:stage2.cell0
        stage2_cell0_edge1__0 = self.stage2_cell0_edge1__0(reduce1_add)
        stage2_cell0_edge2__0 = self.stage2_cell0_edge2__0(reduce1_add)
        stage2_cell0_edge2__1 = self.stage2_cell0_edge2__1(stage2_cell0_edge1__0)
        stage2_cell0_node2 = stage2_cell0_edge2__0 + stage2_cell0_edge2__1
        stage2_cell0_edge3__1 = self.stage2_cell0_edge3__1(stage2_cell0_edge1__0)
        stage2_cell0_edge3__2 = self.stage2_cell0_edge3__2(stage2_cell0_node2)
        stage2_cell0_node3 = reduce1_add + stage2_cell0_edge3__1 + stage2_cell0_edge3__2
        # nb201_cell:stage2.cell1
        stage2_cell1_edge1__0 = self.stage2_cell1_edge1__0(stage2_cell0_node3)
        stage2_cell1_edge2__0 = self.stage2_cell1_edge2__0(stage2_cell0_node3)
        stage2_cell1_edge2__1 = self.stage2_cell1_edge2__1(stage2_cell1_edge1__0)
        stage2_cell1_node2 = stage2_cell1_edge2__0 + stage2_cell1_edge2__1
        stage2_cell1_edge3__1 = self.stage2_cell1_edge3__1(stage2_cell1_edge1__0)
        stage2_cell1_edge3__2 = self.stage2_cell1_edge3__2(stage2_cell1_node2)
        stage2_cell1_node3 = stage2_cell0_node3 + stage2_cell1_edge3__1 + stage2_cell1_edge3__2
        # nb201_cell:stage2.cell2
        stage2_cell2_edge1__0 = self.stage2_cell2_edge1__0(stage2_cell1_node3)
        stage2_cell2_edge2__0 = self.stage2_cell2_edge2__0(stage2_cell1_node3)
        stage2_cell2_edge2__1 = self.stage2_cell2_edge2__1(stage2_cell2_edge1__0)
        stage2_cell2_node2 = stage2_cell2_edge2__0 + stage2_cell2_edge2__1
        stage2_cell2_edge3__1 = self.stage2_cell2_edge3__1(stage2_cell2_edge1__0)
        stage2_cell2_edge3__2 = self.stage2_cell2_edge3__2(stage2_cell2_node2)
        stage2_cell2_node3 = stage2_cell1_node3 + stage2_cell2_edge3__1 + stage2_cell2_edge3__2
        # nb201_cell:stage2.cell3
        stage2_cell3_edge1__0 = self.stage2_cell3_edge1__0(stage2_cell2_node3)
        stage2_cell3_edge2__0 = self.stage2_cell3_edge2__0(stage2_cell2_node3)
        stage2_cell3_edge2__1 = self.stage2_cell3_edge2__1(stage2_cell3_edge1__0)
        stage2_cell3_node2 = stage2_cell3_edge2__0 + stage2_cell3_edge2__1
        stage2_cell3_edge3__1 = self.stage2_cell3_edge3__1(stage2_cell3_edge1__0)
        stage2_cell3_edge3__2 = self.stage2_cell3_edge3__2(stage2_cell3_node2)
        stage2_cell3_node3 = stage2_cell2_node3 + stage2_cell3_edge3__1 + stage2_cell3_edge3__2
        # nb201_cell:stage2.cell4
        stage2_cell4_edge1__0 = self.stage2_cell4_edge1__0(stage2_cell3_node3)
        stage2_cell4_edge2__0 = self.stage2_cell4_edge2__0(stage2_cell3_node3)
        stage2_cell4_edge2__1 = self.stage2_cell4_edge2__1(stage2_cell4_edge1__0)
        stage2_cell4_node2 = stage2_cell4_edge2__0 + stage2_cell4_edge2__1
        stage2_cell4_edge3__1 = self.stage2_cell4_edge3__1(stage2_cell4_edge1__0)
        stage2_cell4_edge3__2 = self.stage2_cell4_edge3__2(stage2_cell4_node2)
        stage2_cell4_node3 = stage2_cell3_node3 + stage2_cell4_edge3__1 + stage2_cell4_edge3__2
        # residual:reduce2
        x = self.reduce2_conv_a(stage2_cell4_node3)
        reduce2_conv_b = self.reduce2_conv_b(x)
        x = self.reduce2_downsample_pool(stage2_cell4_node3)
        reduce2_downsample_conv = self.reduce2_downsample_conv(x)
        reduce2_add = reduce2_conv_b + reduce2_downsample_conv
        # nb201_cell:stage3.cell0
        stage3_cell0_edge1__0 = self.stage3_cell0_edge1__0(reduce2_add)
        stage3_cell0_edge2__0 = self.stage3_cell0_edge2__0(reduce2_add)
        stage3_cell0_edge2__1 = self.stage3_cell0_edge2__1(stage3_cell0_edge1__0)
        stage3_cell0_node2 = stage3_cell0_edge2__0 + stage3_cell0_edge2__1
        stage3_cell0_edge3__1 = self.stage3_cell0_edge3__1(stage3_cell0_edge1__0)
        stage3_cell0_edge3__2 = self.stage3_cell0_edge3__2(stage3_cell0_node2)
        stage3_cell0_node3 = reduce2_add + stage3_cell0_edge3__1 + stage3_cell0_edge3__2
        # nb201_cell:stage3.cell1
        stage3_cell1_edge1__0 = self.stage3_cell1_edge1__0(stage3_cell0_node3)
        stage3_cell1_edge2__0 = self.stage3_cell1_edge2__0(stage3_cell0_node3)
        stage3_cell1_edge2__1 = self.stage3_cell1_edge2__1(stage3_cell1_edge1__0)
        stage3_cell1_node2 = stage3_cell1_edge2__0 + stage3_cell1_edge2__1
        stage3_cell1_edge3__1 = self.stage3_cell1_edge3__1(stage3_cell1_edge1__0)
        stage3_cell1_edge3__2 = self.stage3_cell1_edge3__2(stage3_cell1_node2)
        stage3_cell1_node3 = stage3_cell0_node3 + stage3_cell1_edge3__1 + stage3_cell1_edge3__2
        # nb201_cell:stage3.cell2
        stage3_cell2_edge1__0 = self.stage3_cell2_edge1__0(stage3_cell1_node3)
        stage3_cell2_edge2__0 = self.stage3_cell2_edge2__0(stage3_cell1_node3)
        stage3_cell2_edge2__1 = self.stage3_cell2_edge2__1(stage3_cell2_edge1__0)
        stage3_cell2_node2 = stage3_cell2_edge2__0 + stage3_cell2_edge2__1
        stage3_cell2_edge3__1 = self.stage3_cell2_edge3__1(stage3_cell2_edge1__0)
        stage3_cell2_edge3__2 = self.stage3_cell2_edge3__2(stage3_cell2_node2)
        stage3_cell2_node3 = stage3_cell1_node3 + stage3_cell2_edge3__1 + stage3_cell2_edge3__2
        # nb201_cell:stage3.cell3
        stage3_cell3_edge1__0 = self.stage3_cell3_edge1__0(stage3_cell2_node3)
        stage3_cell3_edge2__0 = self.stage3_cell3_edge2__0(stage3_cell2_node3)
        stage3_cell3_edge2__1 = self.stage3_cell3_edge2__1(stage3_cell3_edge1__0)
        stage3_cell3_node2 = stage3_cell3_edge2__0 + stage3_cell3_edge2__1
        stage3_cell3_edge3__1 = self.stage3_cell3_edge3__1(stage3_cell3_edge1__0)
        stage3_cell3_edge3__2 = self.stage3_cell3_edge3__2(stage3_cell3_node2)
        stage3_cell3_node3 = stage3_cell2_node3 + stage3_cell3_edge3__1 + stage3_cell3_edge3__2
        # nb201_cell:stage3.cell4
        stage3_cell4_edge1__0 = self.stage3_cell4_edge1__0(stage3_cell3_node3)
        stage3_cell4_edge2__0 = self.stage3_cell4_edge2__0(stage3_cell3_node3)
        stage3_cell4_edge2__1 = self.stage3_cell4_edge2__1(stage3_cell4_edge1__0)
        stage3_cell4_node2 = stage3_cell4_edge2__0 + stage3_cell4_edge2__1
        stage3_cell4_edge3__1 = self.stage3_cell4_edge3__1(stage3_cell4_edge1__0)
        stage3_cell4_edge3__2 = self.stage3_cell4_edge3__2(stage3_cell4_node2)
        x = stage3_cell3_node3 + stage3_cell4_edge3__1 + stage3_cell4_edge3__2
        # head:head
        x = self.lastact_bn(x)
        x = self.lastact_relu(x)
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, 64, 8, 8) -> (B, 10)."""
        # head:head
        x = self.head_pool(features)
        x = self.head_fc(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) -> (B, 10)."""
        return self.forward_head(self.forward_features(x))


if __name__ == "__main__":
    model = Nb201Best6111().eval()
    print(model(torch.randn(2, 3, 32, 32)).shape)
