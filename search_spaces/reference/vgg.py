"""VGG (Simonyan & Zisserman 2015) as in torchvision: conv3x3-ReLU stacks (with bias, no BN),
2x2 max-pool between stages, adaptive average pool to 7x7, and a 3-layer MLP classifier.

(in_chans, H, W) -> 5 stages -> (512, H/32, W/32) -> adaptive pool (512, 7, 7) -> flatten
(25088,) -> 4096 -> 4096 -> (num_classes,).
"""

from __future__ import annotations

from search_spaces import blocks
from search_spaces.ir import ArchGraph
from search_spaces.reference.registry import finish_graph, register_model, start_graph

# widths of the 3x3 convs per stage; each stage ends with a 2x2 max-pool (torchvision cfgs A, B, D, E)
CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}


def vgg(name: str, stages: tuple[tuple[int, ...], ...], num_classes: int = 1000, in_chans: int = 3,
        img_size: int = 224, width_mult: float = 1.0, hidden: int = 4096, pool_size: int = 7,
        dropout: float = 0.5) -> ArchGraph:
    """VGG with conv widths ``stages`` (scaled by ``width_mult``): (in_chans, img, img) -> (num_classes,).

    ``hidden`` is the width of the two hidden classifier layers and ``pool_size`` the side of the
    adaptive pool before flattening (torchvision: 4096 and 7); smaller values give a light model
    for tests. ``img_size`` must be at least 32 (five 2x2 pools).
    """
    g, x = start_graph(name, in_chans, img_size)
    channels = 0
    for s, widths in enumerate(stages):
        tag = f"vgg_stage:features{s}"
        for i, width in enumerate(widths):
            channels = max(1, int(width * width_mult))
            x = blocks.conv(g, x, f"features{s}.conv{i}", channels, 3, order="conv-relu", bias=True, block=tag)
        x = g.add(f"features{s}.pool", "pool", [x], block=tag, kind="max", kernel=2, stride=2)
    tag = "head:head"
    x = g.add("head.avgpool", "adaptive_pool", [x], block=tag, kind="avg", size=pool_size)
    x = g.add("head.flatten", "flatten", [x], block=tag)
    for i in range(2):
        x = g.add(f"head.fc{i}", "linear", [x], block=tag, out=hidden)
        x = g.add(f"head.act{i}", "act", [x], block=tag, fn="relu")
        x = g.add(f"head.drop{i}", "dropout", [x], block=tag, p=dropout)
    g.add("head.fc", "linear", [x], block=tag, out=num_classes)
    return finish_graph(g)


@register_model
def vgg11(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, width_mult: float = 1.0,
          hidden: int = 4096, pool_size: int = 7) -> ArchGraph:
    """VGG-11 (config A): 132,863,336 params at 224 / 1000 classes."""
    return vgg("vgg11", CONFIGS["vgg11"], num_classes, in_chans, img_size, width_mult, hidden, pool_size)


@register_model
def vgg13(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, width_mult: float = 1.0,
          hidden: int = 4096, pool_size: int = 7) -> ArchGraph:
    """VGG-13 (config B): 133,047,848 params at 224 / 1000 classes."""
    return vgg("vgg13", CONFIGS["vgg13"], num_classes, in_chans, img_size, width_mult, hidden, pool_size)


@register_model
def vgg16(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, width_mult: float = 1.0,
          hidden: int = 4096, pool_size: int = 7) -> ArchGraph:
    """VGG-16 (config D): 138,357,544 params at 224 / 1000 classes."""
    return vgg("vgg16", CONFIGS["vgg16"], num_classes, in_chans, img_size, width_mult, hidden, pool_size)


@register_model
def vgg19(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, width_mult: float = 1.0,
          hidden: int = 4096, pool_size: int = 7) -> ArchGraph:
    """VGG-19 (config E): 143,667,240 params at 224 / 1000 classes."""
    return vgg("vgg19", CONFIGS["vgg19"], num_classes, in_chans, img_size, width_mult, hidden, pool_size)
