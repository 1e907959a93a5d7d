"""DenseNet-BC (Huang et al. 2017) as in torchvision.

(in_chans, H, W) -> stem conv7x7/2 (no bias) + BN + ReLU + max-pool3/2 (init, H/4, W/4) ->
dense blocks (each adds num_layers * growth channels) separated by transitions (BN-ReLU-conv1x1
halving the channels, 2x2 average pool) -> final BN + ReLU (C, H/32, W/32) -> global average
pool -> linear -> (num_classes,).
"""

from __future__ import annotations

from collections.abc import Sequence

from search_spaces import blocks
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.reference.registry import finish_graph, register_model, start_graph


def densenet(name: str, block_config: Sequence[int], growth: int = 32, init_features: int = 64, bn_size: int = 4,
             num_classes: int = 1000, in_chans: int = 3, img_size: int = 224) -> ArchGraph:
    """DenseNet-BC with ``block_config[i]`` layers in dense block i: (in_chans, img, img) -> (num_classes,)."""
    if not block_config or min(block_config) < 1:
        raise InputError(f"block_config must list at least one dense block of >= 1 layer, got {list(block_config)}")
    g, x = start_graph(name, in_chans, img_size)
    tag = "stem:stem"
    x = blocks.conv(g, x, "stem.conv", init_features, 7, 2, block=tag)
    x = g.add("stem.pool", "pool", [x], block=tag, kind="max", kernel=3, stride=2, padding=1)
    channels = init_features
    for i, num_layers in enumerate(block_config):
        x = blocks.dense_block(g, x, f"denseblock{i + 1}", num_layers, growth, bn_size)
        channels += num_layers * growth
        if i != len(block_config) - 1:
            channels //= 2
            x = blocks.transition(g, x, f"transition{i + 1}", channels)
    x = g.add("norm5.bn", "norm", [x], block="norm:norm5", kind="batch")
    x = g.add("norm5.act", "act", [x], block="norm:norm5", fn="relu")
    blocks.classifier_head(g, x, num_classes)
    return finish_graph(g)


@register_model
def densenet121(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, growth: int = 32) -> ArchGraph:
    """DenseNet-121 (blocks 6-12-24-16, growth 32): 7,978,856 params at 224 / 1000 classes."""
    return densenet("densenet121", (6, 12, 24, 16), growth, 2 * growth, 4, num_classes, in_chans, img_size)


@register_model
def densenet169(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, growth: int = 32) -> ArchGraph:
    """DenseNet-169 (blocks 6-12-32-32, growth 32): 14,149,480 params at 224 / 1000 classes."""
    return densenet("densenet169", (6, 12, 32, 32), growth, 2 * growth, 4, num_classes, in_chans, img_size)


@register_model
def densenet201(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, growth: int = 32) -> ArchGraph:
    """DenseNet-201 (blocks 6-12-48-32, growth 32): 20,013,928 params at 224 / 1000 classes."""
    return densenet("densenet201", (6, 12, 48, 32), growth, 2 * growth, 4, num_classes, in_chans, img_size)
