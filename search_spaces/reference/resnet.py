"""ResNet / ResNeXt (He et al. 2016, Xie et al. 2017) as in torchvision, the full pre-activation
ResNet v2 (He et al. 2016, "Identity Mappings") as in timm's ``resnetv2_*``, and the common CIFAR
ResNet-18.

ImageNet layout: (in_chans, H, W) -> stem conv7x7/2 + max-pool3/2 (64, H/4, W/4) -> 4 stages
(strides 1, 2, 2, 2) -> (C, H/32, W/32) -> global average pool -> linear -> (num_classes,).
CIFAR layout: stem conv3x3/1 (no pool), so (3, 32, 32) -> (512, 4, 4) -> (num_classes,).
"""

from __future__ import annotations

from collections.abc import Sequence

from search_spaces import blocks
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.reference.registry import finish_graph, register_model, start_graph

WIDTHS = (64, 128, 256, 512)


def _stem(g: ArchGraph, x: str, width: int, kind: str, order: str) -> str:
    """'imagenet': conv7x7/2 + max-pool3/2, (C, H, W) -> (width, H/4, W/4); 'cifar': conv3x3/1."""
    tag = "stem:stem"
    if kind == "cifar":
        return blocks.conv(g, x, "stem.conv", width, 3, 1, order=order, block=tag)
    if kind != "imagenet":
        raise InputError(f"stem must be 'imagenet' or 'cifar', got {kind!r}")
    x = blocks.conv(g, x, "stem.conv", width, 7, 2, order=order, block=tag)
    return g.add("stem.pool", "pool", [x], block=tag, kind="max", kernel=3, stride=2, padding=1)


def _check_stages(layers: Sequence[int], widths: Sequence[int]) -> None:
    if len(layers) != len(widths) or not layers or min(layers) < 1:
        raise InputError(f"layers {list(layers)} and widths {list(widths)} must be non-empty, of equal "
                         "length, with at least one block per stage")


def resnet(name: str, layers: Sequence[int], bottleneck: bool = False, num_classes: int = 1000,
           in_chans: int = 3, img_size: int = 224, groups: int = 1, base_width: int = 64,
           widths: Sequence[int] = WIDTHS, stem_width: int = 64, stem: str = "imagenet") -> ArchGraph:
    """Post-activation ResNet/ResNeXt: (in_chans, img, img) -> (num_classes,).

    ``layers[s]`` blocks of width ``widths[s]`` per stage (first block of stages after the first
    has stride 2); bottleneck blocks output 4x their width, with ``groups`` x ``base_width``
    grouped 3x3 convs for ResNeXt.
    """
    _check_stages(layers, widths)
    g, x = start_graph(name, in_chans, img_size)
    x = _stem(g, x, stem_width, stem, "conv-bn-relu")
    channels = stem_width
    for s, (depth, planes) in enumerate(zip(layers, widths, strict=True)):
        for b in range(depth):
            stride = 2 if s > 0 and b == 0 else 1
            x = blocks.residual_block(g, x, f"layer{s + 1}.{b}", channels, planes, stride, bottleneck=bottleneck,
                                      groups=groups, base_width=base_width)
            channels = planes * 4 if bottleneck else planes
    blocks.classifier_head(g, x, num_classes)
    return finish_graph(g)


def preact_resnet(name: str, layers: Sequence[int], bottleneck: bool = True, num_classes: int = 1000,
                  in_chans: int = 3, img_size: int = 224, widths: Sequence[int] = WIDTHS,
                  stem_width: int = 64) -> ArchGraph:
    """Full pre-activation ResNet v2 (timm ``resnetv2``): (in_chans, img, img) -> (num_classes,).

    Stem conv7x7/2 without BN + max-pool3/2; pre-activation blocks (stride on the 3x3 conv,
    projection shortcut = 1x1 conv without BN on the pre-activated input); final BN + ReLU
    before the global pool.
    """
    _check_stages(layers, widths)
    g, x = start_graph(name, in_chans, img_size)
    x = _stem(g, x, stem_width, "imagenet", "conv")
    channels = stem_width
    for s, (depth, planes) in enumerate(zip(layers, widths, strict=True)):
        for b in range(depth):
            stride = 2 if s > 0 and b == 0 else 1
            x = blocks.preact_residual_block(g, x, f"layer{s + 1}.{b}", channels, planes, stride,
                                             bottleneck=bottleneck)
            channels = planes * 4 if bottleneck else planes
    x = g.add("norm.bn", "norm", [x], block="norm:norm", kind="batch")
    x = g.add("norm.act", "act", [x], block="norm:norm", fn="relu")
    blocks.classifier_head(g, x, num_classes)
    return finish_graph(g)


@register_model
def resnet18(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224) -> ArchGraph:
    """ResNet-18 (basic blocks 2-2-2-2): 11,689,512 params at 224 / 1000 classes."""
    return resnet("resnet18", (2, 2, 2, 2), False, num_classes, in_chans, img_size)


@register_model
def resnet34(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224) -> ArchGraph:
    """ResNet-34 (basic blocks 3-4-6-3): 21,797,672 params at 224 / 1000 classes."""
    return resnet("resnet34", (3, 4, 6, 3), False, num_classes, in_chans, img_size)


@register_model
def resnet50(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224) -> ArchGraph:
    """ResNet-50 (bottlenecks 3-4-6-3): 25,557,032 params at 224 / 1000 classes."""
    return resnet("resnet50", (3, 4, 6, 3), True, num_classes, in_chans, img_size)


@register_model
def resnext50_32x4d(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224) -> ArchGraph:
    """ResNeXt-50 32x4d (bottlenecks 3-4-6-3, 32 groups of width 4): 25,028,904 params at 224 / 1000."""
    return resnet("resnext50_32x4d", (3, 4, 6, 3), True, num_classes, in_chans, img_size,
                  groups=32, base_width=4)


@register_model
def preact_resnet50(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224) -> ArchGraph:
    """Pre-activation ResNet-50 v2 (timm ``resnetv2_50``): 25,549,352 params at 224 / 1000 classes."""
    return preact_resnet("preact_resnet50", (3, 4, 6, 3), True, num_classes, in_chans, img_size)


@register_model
def resnet18_cifar(num_classes: int = 10, in_chans: int = 3, img_size: int = 32) -> ArchGraph:
    """CIFAR ResNet-18 (3x3 stem, no max-pool): (3, 32, 32) -> (10,), 11,173,962 params."""
    return resnet("resnet18_cifar", (2, 2, 2, 2), False, num_classes, in_chans, img_size, stem="cifar")
