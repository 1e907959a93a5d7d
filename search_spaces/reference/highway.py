"""Convolutional highway network (Srivastava, Greff & Schmidhuber 2015, "Training Very Deep Networks").

Each highway layer computes y = H(x) * T(x) + x * (1 - T(x)) with H = conv3x3-BN-ReLU and the
gate T = sigmoid(conv3x3(x) + b), b initialised negative (towards carrying x); see
:func:`search_spaces.blocks.highway_block`. The network, in the paper's plain convolutional
style (no residual additions):

(in_chans, H, W) -> stem conv3x3/``stem_stride``-BN-ReLU (widths[0], H/s, W/s) -> stage 0 of
``depths[0]`` highway layers -> [2x2 max-pool, 1x1 conv-BN-ReLU to widths[i] if the width
changes, ``depths[i]`` highway layers] for each later stage -> global average pool -> linear
-> (num_classes,).
"""

from __future__ import annotations

from collections.abc import Sequence

from search_spaces import blocks
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.reference.registry import finish_graph, register_model, start_graph


@register_model
def highwaynet(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224,
               widths: Sequence[int] = (32, 64, 128, 256), depths: Sequence[int] = (3, 3, 3, 3),
               stem_stride: int = 2, gate_bias: float = -1.0) -> ArchGraph:
    """Convolutional highway network: (in_chans, img, img) -> (num_classes,).

    ``depths[i]`` highway layers of ``widths[i]`` channels in stage i; stages after the first
    start with a 2x2 max-pool (so ``img_size / stem_stride`` must be at least 2^(stages-1)).
    ``stem_stride=2`` (default) suits 224x224 inputs (final map 14x14); use 1 for CIFAR-sized
    inputs, as in the paper.
    No published parameter count exists; the closed form is
    ``9*in_chans*w0 + 2*w0 + sum_i depths[i]*(18*w_i^2 + 3*w_i)
    + sum_{i>0, w_i != w_{i-1}} (w_{i-1}*w_i + 2*w_i) + w_last*num_classes + num_classes``.
    """
    if len(widths) != len(depths) or not widths or min(depths) < 1:
        raise InputError(f"widths {list(widths)} and depths {list(depths)} must be non-empty, of equal length, "
                         "with at least one highway layer per stage")
    g, x = start_graph("highwaynet", in_chans, img_size)
    x = blocks.conv(g, x, "stem.conv", widths[0], 3, stem_stride, block="stem:stem")
    for s, (width, depth) in enumerate(zip(widths, depths, strict=True)):
        if s > 0:
            tag = f"downsample:stage{s}.down"
            x = g.add(f"stage{s}.down.pool", "pool", [x], block=tag, kind="max", kernel=2, stride=2)
            if width != widths[s - 1]:
                x = blocks.conv(g, x, f"stage{s}.down.conv", width, 1, block=tag)
        for b in range(depth):
            x = blocks.highway_block(g, x, f"stage{s}.{b}", width, gate_bias=gate_bias)
    blocks.classifier_head(g, x, num_classes)
    return finish_graph(g)
