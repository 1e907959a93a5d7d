"""Building blocks as subgraph templates over the IR.

Each function adds the nodes of one block to ``g`` after node ``x`` and returns the block's
output node id. Blocks take plain ints and layer choices (like timm's blocks), and tag their
nodes ``block="<kind>:<name>"`` and record their arguments (``ArchGraph.blocks``) so exporters can
emit one named class per block kind with explicit constructor arguments.
All feature maps are (C, H, W); ``name`` prefixes the node ids.
"""

from __future__ import annotations

from search_spaces.ir import ArchGraph


def conv(g: ArchGraph, x: str, name: str, out: int, kernel: int = 3, stride: int = 1,
         order: str = "conv-bn-relu", block: str | None = None, **params: object) -> str:
    """One conv node (see ops 'conv'): (C, H, W) -> (out, H/stride, W/stride)."""
    return g.add(name, "conv", [x], block=block, out=out, kernel=kernel, stride=stride, order=order, **params)


def residual_block(g: ArchGraph, x: str, name: str, in_ch: int, planes: int, stride: int = 1,
                   bottleneck: bool = False, groups: int = 1, base_width: int = 64, expansion: int = 4,
                   kernel: int = 3) -> str:
    """ResNet / ResNeXt block (post-activation, He et al. 2016): relu(F(x) + shortcut(x)).

    basic: kxk -> kxk (out = planes); bottleneck: 1x1 -> kxk (``groups`` = ResNeXt cardinality,
    width = planes * base_width / 64 * groups) -> 1x1 (out = planes * expansion).
    shortcut: identity, or a 1x1 stride-s conv + BN projection when the shape changes.
    """
    tag = g.record_block(f"residual:{name}", in_ch=in_ch, planes=planes, stride=stride, bottleneck=bottleneck,
                         groups=groups, base_width=base_width, expansion=expansion, kernel=kernel)
    if bottleneck:
        width = int(planes * (base_width / 64.0)) * groups
        out_ch = planes * expansion
        h = conv(g, x, f"{name}.conv1", width, 1, block=tag)
        h = conv(g, h, f"{name}.conv2", width, kernel, stride, groups=groups, block=tag)
        h = conv(g, h, f"{name}.conv3", out_ch, 1, order="conv-bn", block=tag)
    else:
        out_ch = planes
        h = conv(g, x, f"{name}.conv1", planes, kernel, stride, block=tag)
        h = conv(g, h, f"{name}.conv2", planes, kernel, order="conv-bn", block=tag)
    shortcut = x
    if stride != 1 or in_ch != out_ch:
        shortcut = conv(g, x, f"{name}.downsample", out_ch, 1, stride, order="conv-bn", block=tag)
    return g.add(f"{name}.add", "act", [h, shortcut], merge="sum", block=tag, fn="relu")


def preact_residual_block(g: ArchGraph, x: str, name: str, in_ch: int, planes: int, stride: int = 1,
                          bottleneck: bool = True, expansion: int = 4) -> str:
    """Full pre-activation block (He et al. 2016, "Identity Mappings"): x + F(BN-ReLU(x)).

    BN-ReLU is applied once to x; the residual branch (1x1 -> 3x3 -> 1x1, or 3x3 -> 3x3) uses
    BN-ReLU-conv units; a projection shortcut (1x1 conv, no BN) reads the pre-activated x.
    """
    tag = g.record_block(f"preact_residual:{name}", in_ch=in_ch, planes=planes, stride=stride,
                         bottleneck=bottleneck, expansion=expansion)
    pre = g.add(f"{name}.norm1", "norm", [x], block=tag)
    pre = g.add(f"{name}.act1", "act", [pre], block=tag)
    if bottleneck:
        out_ch = planes * expansion
        h = conv(g, pre, f"{name}.conv1", planes, 1, order="conv", block=tag)
        h = conv(g, h, f"{name}.conv2", planes, 3, stride, order="bn-relu-conv", block=tag)
        h = conv(g, h, f"{name}.conv3", out_ch, 1, order="bn-relu-conv", block=tag)
    else:
        out_ch = planes
        h = conv(g, pre, f"{name}.conv1", planes, 3, stride, order="conv", block=tag)
        h = conv(g, h, f"{name}.conv2", planes, 3, order="bn-relu-conv", block=tag)
    shortcut = x
    if stride != 1 or in_ch != out_ch:
        shortcut = conv(g, pre, f"{name}.downsample", out_ch, 1, stride, order="conv", block=tag)
    return g.add(f"{name}.add", "identity", [h, shortcut], merge="sum", block=tag)


def inception_block(g: ArchGraph, x: str, name: str, ch1x1: int, ch3x3red: int, ch3x3: int,
                    ch5x5red: int, ch5x5: int, pool_proj: int, kernel5: int = 5, factorized: bool = False,
                    bn_eps: float = 1e-3) -> str:
    """Inception module: concat[1x1 | 1x1->3x3 | 1x1->5x5 | maxpool3->1x1] along channels.

    ``factorized`` replaces the 5x5 by two 3x3 convs (Inception v2/v3); ``kernel5=3`` gives
    torchvision's GoogLeNet, which uses a 3x3 conv in that branch. Convs are conv-BN-ReLU.
    """
    tag = g.record_block(f"inception:{name}", ch1x1=ch1x1, ch3x3red=ch3x3red, ch3x3=ch3x3, ch5x5red=ch5x5red,
                         ch5x5=ch5x5, pool_proj=pool_proj, kernel5=kernel5, factorized=factorized, bn_eps=bn_eps)
    kw = {"block": tag, "bn_eps": bn_eps}
    b1 = conv(g, x, f"{name}.branch1", ch1x1, 1, **kw)
    b2 = conv(g, x, f"{name}.branch2.0", ch3x3red, 1, **kw)
    b2 = conv(g, b2, f"{name}.branch2.1", ch3x3, 3, **kw)
    b3 = conv(g, x, f"{name}.branch3.0", ch5x5red, 1, **kw)
    if factorized:
        b3 = conv(g, b3, f"{name}.branch3.1", ch5x5, 3, **kw)
        b3 = conv(g, b3, f"{name}.branch3.2", ch5x5, 3, **kw)
    else:
        b3 = conv(g, b3, f"{name}.branch3.1", ch5x5, kernel5, **kw)
    b4 = g.add(f"{name}.branch4.0", "pool", [x], block=tag, kind="max", kernel=3, stride=1, padding=1,
               ceil_mode=True)
    b4 = conv(g, b4, f"{name}.branch4.1", pool_proj, 1, **kw)
    return g.add(f"{name}.concat", "identity", [b1, b2, b3, b4], merge="concat", block=tag)


def dense_block(g: ArchGraph, x: str, name: str, num_layers: int, growth: int, bn_size: int = 4,
                kernel: int = 3) -> str:
    """DenseNet block: layer i sees concat(x, out_1, ..., out_{i-1}); returns concat of all.

    Each layer: BN-ReLU-conv1x1 (bn_size * growth) -> BN-ReLU-conv kxk (growth; k = 3 in DenseNet).
    Output channels: C_in + num_layers * growth.
    """
    tag = g.record_block(f"dense:{name}", num_layers=num_layers, growth=growth, bn_size=bn_size, kernel=kernel)
    features = [x]
    for i in range(num_layers):
        merge = "concat" if len(features) > 1 else None
        h = g.add(f"{name}.layer{i}.conv1", "conv", features, merge=merge, block=tag, out=bn_size * growth,
                  kernel=1, order="bn-relu-conv")
        h = conv(g, h, f"{name}.layer{i}.conv2", growth, kernel, order="bn-relu-conv", block=tag)
        features.append(h)
    return g.add(f"{name}.concat", "identity", features, merge="concat", block=tag)


def transition(g: ArchGraph, x: str, name: str, out: int) -> str:
    """DenseNet transition: BN-ReLU-conv1x1 (out) -> 2x2 average pool (halves H, W)."""
    tag = g.record_block(f"transition:{name}", out=out)
    h = conv(g, x, f"{name}.conv", out, 1, order="bn-relu-conv", block=tag)
    return g.add(f"{name}.pool", "pool", [h], block=tag, kind="avg", kernel=2, stride=2)


def highway_block(g: ArchGraph, x: str, name: str, channels: int, kernel: int = 3, gate_kernel: int = 3,
                  gate_bias: float = -1.0) -> str:
    """Convolutional highway layer (Srivastava et al. 2015): y = H(x)*T(x) + x*(1-T(x)).

    H: conv k x k -> BN -> ReLU (channels preserved); T: sigmoid(conv gate_kernel(x) + b), with
    b initialised to ``gate_bias`` (negative biases the layer towards carrying x).
    """
    tag = g.record_block(f"highway:{name}", channels=channels, kernel=kernel, gate_kernel=gate_kernel,
                         gate_bias=gate_bias)
    h = conv(g, x, f"{name}.transform", channels, kernel, block=tag)
    return g.add(f"{name}.gate", "identity", [h, x], merge="gate", block=tag,
                 merge_params={"kernel": gate_kernel, "bias": gate_bias})


def attention_block(g: ArchGraph, x: str, name: str, dim: int, heads: int, mlp_ratio: float = 4.0,
                    tokens: bool = True, qkv_bias: bool = True, pos: str = "none") -> str:
    """Pre-norm transformer block: x + MHSA(norm(x)), then + MLP(norm(.)).

    tokens=True (ViT): (N, dim) tokens, layer norms, MLP = linear-GELU-linear.
    tokens=False: attention over the H*W positions of a (dim, H, W) map with positional encoding
    ``pos``, batch norms, MLP = 1x1 conv-ReLU -> 1x1 conv.
    """
    tag = g.record_block(f"attention:{name}", dim=dim, heads=heads, mlp_ratio=mlp_ratio, tokens=tokens,
                         qkv_bias=qkv_bias, pos=pos)
    hidden = int(dim * mlp_ratio)
    norm = {"kind": "layer", "eps": 1e-6} if tokens else {"kind": "batch"}
    h = g.add(f"{name}.norm1", "norm", [x], block=tag, **norm)
    h = g.add(f"{name}.attn", "mhsa", [h], block=tag, heads=heads, qkv_bias=qkv_bias, pos=pos)
    r = g.add(f"{name}.add1", "identity", [h, x], merge="sum", block=tag)
    h = g.add(f"{name}.norm2", "norm", [r], block=tag, **norm)
    if tokens:
        h = g.add(f"{name}.fc1", "linear", [h], block=tag, out=hidden)
        h = g.add(f"{name}.act", "act", [h], block=tag, fn="gelu")
        h = g.add(f"{name}.fc2", "linear", [h], block=tag, out=dim)
    else:
        h = conv(g, h, f"{name}.fc1", hidden, 1, order="conv-relu", bias=True, block=tag)
        h = conv(g, h, f"{name}.fc2", dim, 1, order="conv", bias=True, block=tag)
    return g.add(f"{name}.add2", "identity", [h, r], merge="sum", block=tag)


def classifier_head(g: ArchGraph, x: str, num_classes: int, dropout: float = 0.0, name: str = "head") -> str:
    """Global average pool -> [dropout] -> linear: (C, H, W) -> (num_classes,)."""
    h = g.add(f"{name}.pool", "global_pool", [x], block=f"head:{name}")
    if dropout > 0:
        h = g.add(f"{name}.dropout", "dropout", [h], block=f"head:{name}", p=dropout)
    return g.add(f"{name}.fc", "linear", [h], block=f"head:{name}", out=num_classes)
