"""GoogLeNet (Inception v1, Szegedy et al. 2015) as in torchvision, without the auxiliary heads.

BasicConv2d = conv (no bias) + BN (eps 1e-3) + ReLU; max-pools use ceil_mode; torchvision's
"5x5" branch is a 3x3 conv (``kernel5=3``).
(in_chans, H, W) -> stem (192, H/8, W/8) -> inception 3a-3b -> pool -> 4a-4e (832, H/16, W/16)
-> pool -> 5a-5b (1024, H/32, W/32) -> global pool -> dropout 0.2 -> (num_classes,).
"""

from __future__ import annotations

from search_spaces import blocks
from search_spaces.ir import ArchGraph
from search_spaces.reference.registry import finish_graph, register_model, start_graph

BN_EPS = 1e-3

# (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) per inception module, and the kernel of the
# stride-2 max-pool that follows it (0: none)
INCEPTION: tuple[tuple[str, tuple[int, int, int, int, int, int], int], ...] = (
    ("inception3a", (64, 96, 128, 16, 32, 32), 0),
    ("inception3b", (128, 128, 192, 32, 96, 64), 3),
    ("inception4a", (192, 96, 208, 16, 48, 64), 0),
    ("inception4b", (160, 112, 224, 24, 64, 64), 0),
    ("inception4c", (128, 128, 256, 24, 64, 64), 0),
    ("inception4d", (112, 144, 288, 32, 64, 64), 0),
    ("inception4e", (256, 160, 320, 32, 128, 128), 2),
    ("inception5a", (256, 160, 320, 32, 128, 128), 0),
    ("inception5b", (384, 192, 384, 48, 128, 128), 0),
)


def _maxpool(g: ArchGraph, x: str, name: str, kernel: int, block: str) -> str:
    """Stride-2 max-pool with ceil_mode (torchvision's GoogLeNet pools): (C, H, W) -> (C, ~H/2, ~W/2)."""
    return g.add(name, "pool", [x], block=block, kind="max", kernel=kernel, stride=2, ceil_mode=True)


@register_model
def googlenet(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, dropout: float = 0.2,
              kernel5: int = 3) -> ArchGraph:
    """torchvision GoogLeNet: (in_chans, img, img) -> (num_classes,); 6,624,904 params at 224 / 1000.

    ``kernel5=5`` gives the paper's 5x5 convs instead of torchvision's 3x3.
    """
    g, x = start_graph("googlenet", in_chans, img_size)
    tag = "stem:stem"
    x = blocks.conv(g, x, "conv1", 64, 7, 2, bn_eps=BN_EPS, block=tag)
    x = _maxpool(g, x, "maxpool1", 3, tag)
    x = blocks.conv(g, x, "conv2", 64, 1, bn_eps=BN_EPS, block=tag)
    x = blocks.conv(g, x, "conv3", 192, 3, bn_eps=BN_EPS, block=tag)
    x = _maxpool(g, x, "maxpool2", 3, tag)
    pools = 2
    for name, widths, pool_kernel in INCEPTION:
        x = blocks.inception_block(g, x, name, *widths, kernel5=kernel5, bn_eps=BN_EPS)
        if pool_kernel:
            pools += 1
            x = _maxpool(g, x, f"maxpool{pools}", pool_kernel, f"downsample:maxpool{pools}")
    blocks.classifier_head(g, x, num_classes, dropout=dropout)
    return finish_graph(g)
