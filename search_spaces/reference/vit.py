"""Vision Transformer (Dosovitskiy et al. 2021) as in timm / DeiT.

(in_chans, H, W) -> patch conv (dim, H/p, W/p) -> tokens (1 + HW/p^2, dim) with a class token and
a learned position embedding -> ``depth`` pre-norm blocks (LayerNorm eps 1e-6, MHSA with qkv
bias, MLP 4x GELU) -> final LayerNorm -> class token (dim,) -> linear -> (num_classes,).
"""

from __future__ import annotations

from search_spaces import blocks
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.reference.registry import finish_graph, register_model, start_graph


def vision_transformer(name: str, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224,
                       patch_size: int = 16, embed_dim: int = 768, depth: int = 12, heads: int = 12,
                       mlp_ratio: float = 4.0) -> ArchGraph:
    """ViT with a class-token head: (in_chans, img, img) -> (num_classes,).

    ``img_size`` must be a multiple of ``patch_size`` (as in timm; no partial patches).
    """
    if img_size % patch_size:
        raise InputError(f"img_size {img_size} must be a multiple of patch_size {patch_size}")
    if embed_dim % heads:
        raise InputError(f"heads {heads} must divide embed_dim {embed_dim}")
    g, x = start_graph(name, in_chans, img_size)
    tag = "stem:patch_embed"
    x = blocks.conv(g, x, "patch_embed.proj", embed_dim, patch_size, patch_size, padding=0, bias=True,
                    order="conv", block=tag)
    x = g.add("patch_embed.tokens", "to_tokens", [x], block=tag, cls_token=True, pos="learned")
    for i in range(depth):
        x = blocks.attention_block(g, x, f"blocks.{i}", embed_dim, heads, mlp_ratio, tokens=True, qkv_bias=True)
    tag = "head:head"
    x = g.add("norm", "norm", [x], block="norm:norm", kind="layer", eps=1e-6)
    x = g.add("head.pool", "token_pool", [x], block=tag, kind="cls")
    g.add("head.fc", "linear", [x], block=tag, out=num_classes)
    return finish_graph(g)


@register_model
def vit_tiny_patch16_224(num_classes: int = 1000, in_chans: int = 3, img_size: int = 224,
                         patch_size: int = 16) -> ArchGraph:
    """ViT-Ti/16 (DeiT-Ti: dim 192, 12 blocks, 3 heads): 5,717,416 params at 224 / 1000 classes."""
    return vision_transformer("vit_tiny_patch16_224", num_classes, in_chans, img_size, patch_size,
                              embed_dim=192, depth=12, heads=3)
