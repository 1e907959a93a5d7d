"""Source templates for exported models: helper modules and one class per building-block kind.

Everything here is *text* that the code generator copies into a standalone model file (which
imports only ``math``, ``torch`` and ``torch.nn``). The helper modules reproduce the parameters,
buffers and math of :mod:`search_spaces.layers` with plain-int constructors; the block classes
build exactly the modules of the templates in :mod:`search_spaces.blocks`, with submodule
attributes named after the template's node ids (``layer1.0.conv1`` -> ``conv1``), so a compiled
graph's weights map onto them one to one. :data:`BLOCKS` says, per block kind, which template
function the class mirrors and how its constructor arguments follow from the recorded ones; the
generator re-runs that template and compares module structures before it uses a class.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from search_spaces import blocks
from search_spaces.ir import ArchGraph
from search_spaces.ops import Shape

# ----------------------------------------------------------------------------- helper sources
# name -> (source, names it depends on). Emitted in this order when used.
HELPERS: dict[str, tuple[str, tuple[str, ...]]] = {}

HELPERS["sinusoidal_encoding"] = ('''
def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """(length, dim) fixed sine/cosine positional encoding (Vaswani et al.)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    enc = torch.zeros(length, dim)
    enc[:, 0::2] = torch.sin(position * freq)
    enc[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return enc
''', ())

HELPERS["conv_bn"] = ('''
def conv_bn(in_ch: int, out: int, kernel: int, stride: int = 1, groups: int = 1, eps: float = 1e-5,
            relu: bool = True) -> nn.Sequential:
    """Conv k x k ('same' padding, no bias) -> BN [-> ReLU]: (B, in_ch, H, W) -> (B, out, H/stride, W/stride)."""
    layers = [nn.Conv2d(in_ch, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out, eps=eps)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)
''', ())

HELPERS["bn_relu_conv"] = ('''
def bn_relu_conv(in_ch: int, out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Pre-activation unit BN -> ReLU -> conv k x k (no bias): (B, in_ch, H, W) -> (B, out, H/stride, W/stride)."""
    return nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(),
                         nn.Conv2d(in_ch, out, kernel, stride, (kernel - 1) // 2, bias=False))
''', ())

HELPERS["relu_conv_bn"] = ('''
def relu_conv_bn(in_ch: int, out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """ReLU -> conv k x k ('same' padding, no bias) -> BN: (B, in_ch, H, W) -> (B, out, H/stride, W/stride)."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(in_ch, out, kernel, stride, (kernel - 1) // 2, bias=False),
                         nn.BatchNorm2d(out))
''', ())

HELPERS["sep_conv"] = ('''
def sep_conv(in_ch: int, out: int, kernel: int, stride: int = 1, dilation: int = 1, repeats: int = 2) -> nn.Sequential:
    """DARTS separable conv, (ReLU -> depthwise k x k -> pointwise 1x1 -> BN) x ``repeats`` (the stride on the
    first): (B, in_ch, H, W) -> (B, out, H/stride, W/stride). repeats=1 with dilation 2 is DARTS' dil_conv."""
    layers: list[nn.Module] = []
    for r in range(repeats):
        width = out if r == repeats - 1 else in_ch
        layers += [nn.ReLU(), nn.Conv2d(in_ch, in_ch, kernel, stride if r == 0 else 1, (kernel - 1) // 2 * dilation,
                                        dilation, groups=in_ch, bias=False),
                   nn.Conv2d(in_ch, width, 1, bias=False), nn.BatchNorm2d(width)]
    return nn.Sequential(*layers)
''', ())

HELPERS["FactorizedReduce"] = ('''
class FactorizedReduce(nn.Module):
    """(B, C, H, W) -> (B, out, H/2, W/2): ReLU, two offset stride-2 1x1 convs concatenated, BN."""

    def __init__(self, in_ch: int, out: int) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(in_ch, out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(in_ch, out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))
''', ())

HELPERS["Zero"] = ('''
class Zero(nn.Module):
    """Zeros shaped like the (strided) input: the 'none' op."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)
''', ())

HELPERS["PositionalEncoding"] = ('''
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
''', ("sinusoidal_encoding",))

HELPERS["SelfAttention"] = ('''
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
''', ("PositionalEncoding",))

HELPERS["ToTokens"] = ('''
class ToTokens(nn.Module):
    """(B, dim, H, W) -> (B, H*W [+1], dim): flatten positions, prepend a class token, add positions."""

    def __init__(self, dim: int, num_patches: int, cls_token: bool = True, pos: str = "learned") -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.pos = PositionalEncoding(pos, num_patches + int(cls_token), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos(x)
''', ("PositionalEncoding",))

HELPERS["TokenPool"] = ('''
class TokenPool(nn.Module):
    """(B, N, D) -> (B, D): the class token (first, kind 'cls') or the mean over tokens ('mean')."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] if self.kind == "cls" else x.mean(dim=1)
''', ())

HELPERS["GlobalPool"] = ('''
class GlobalPool(nn.Module):
    """(B, C, H, W) -> (B, C): average ('avg') or max ('max') over positions."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if self.kind == "avg" else x.amax(dim=(2, 3))
''', ())

HELPERS["HighwayGate"] = ('''
class HighwayGate(nn.Module):
    """Highway merge: y = h * T + x * (1 - T), T = sigmoid(transform(x)); h, x of equal shape.

    The transform is a k x k conv for maps (``spatial``) and a linear layer for tokens/vectors; its
    bias starts at ``bias`` (negative: the layer starts close to carrying x, as in Srivastava et al.).
    """

    def __init__(self, channels: int, kernel: int = 1, bias: float = -1.0, spatial: bool = True) -> None:
        super().__init__()
        if spatial:
            self.transform: nn.Module = nn.Conv2d(channels, channels, kernel, padding=(kernel - 1) // 2)
        else:
            self.transform = nn.Linear(channels, channels)
        nn.init.constant_(self.transform.bias, bias)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.transform(x))
        return h * t + x * (1.0 - t)
''', ())

# ----------------------------------------------------------------------------- block classes
RESIDUAL = '''
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
'''

PREACT_RESIDUAL = '''
class PreActResidualBlock(nn.Module):
    """Full pre-activation block (He et al. 2016, "Identity Mappings"): x + F(BN-ReLU(x)).

    BN-ReLU is applied once to x; the residual branch (1x1 -> 3x3 -> 1x1, or 3x3 -> 3x3) uses
    BN-ReLU-conv units; a projection shortcut (1x1 conv, no BN) reads the pre-activated x.
    (B, in_ch, H, W) -> (B, out, H/stride, W/stride), out = planes * expansion if bottleneck else planes.
    """

    def __init__(self, in_ch: int, planes: int, stride: int = 1, bottleneck: bool = True,
                 expansion: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.act1 = nn.ReLU()
        if bottleneck:
            out_ch = planes * expansion
            self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
            self.conv2 = bn_relu_conv(planes, planes, 3, stride)
            self.conv3 = bn_relu_conv(planes, out_ch, 1)
        else:
            out_ch = planes
            self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
            self.conv2 = bn_relu_conv(planes, planes, 3)
            self.conv3 = None
        projected = stride != 1 or in_ch != out_ch
        self.downsample = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False) if projected else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.norm1(x))
        out = self.conv2(self.conv1(pre))
        if self.conv3 is not None:
            out = self.conv3(out)
        shortcut = x if self.downsample is None else self.downsample(pre)
        return out + shortcut
'''

INCEPTION = '''
class InceptionBlock(nn.Module):
    """Inception module: concat[1x1 | 1x1 -> 3x3 | 1x1 -> k5 x k5 | maxpool 3 -> 1x1] along channels.

    ``factorized`` replaces the k5 x k5 conv by two 3x3 convs; convs are conv-BN(eps ``bn_eps``)-ReLU.
    (B, in_ch, H, W) -> (B, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W).
    """

    def __init__(self, in_ch: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, kernel5: int = 5, factorized: bool = False, bn_eps: float = 1e-3) -> None:
        super().__init__()
        self.branch1 = conv_bn(in_ch, ch1x1, 1, eps=bn_eps)
        self.branch2_0 = conv_bn(in_ch, ch3x3red, 1, eps=bn_eps)
        self.branch2_1 = conv_bn(ch3x3red, ch3x3, 3, eps=bn_eps)
        self.branch3_0 = conv_bn(in_ch, ch5x5red, 1, eps=bn_eps)
        if factorized:
            self.branch3_1 = conv_bn(ch5x5red, ch5x5, 3, eps=bn_eps)
            self.branch3_2 = conv_bn(ch5x5, ch5x5, 3, eps=bn_eps)
        else:
            self.branch3_1 = conv_bn(ch5x5red, ch5x5, kernel5, eps=bn_eps)
            self.branch3_2 = None
        self.branch4_0 = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.branch4_1 = conv_bn(in_ch, pool_proj, 1, eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1(x)
        b2 = self.branch2_1(self.branch2_0(x))
        b3 = self.branch3_1(self.branch3_0(x))
        if self.branch3_2 is not None:
            b3 = self.branch3_2(b3)
        b4 = self.branch4_1(self.branch4_0(x))
        return torch.cat([b1, b2, b3, b4], dim=1)
'''

DENSE = '''
class DenseBlock(nn.Module):
    """DenseNet block: layer i sees concat(x, out_0, ..., out_{i-1}); returns the concat of all.

    Layer i (attributes ``layer{i}_conv1``, ``layer{i}_conv2``): BN-ReLU-conv1x1 (bn_size * growth)
    -> BN-ReLU-conv k x k (growth). (B, in_ch, H, W) -> (B, in_ch + num_layers * growth, H, W).
    """

    def __init__(self, in_ch: int, num_layers: int, growth: int, bn_size: int = 4, kernel: int = 3) -> None:
        super().__init__()
        self.num_layers = num_layers
        for i in range(num_layers):
            channels = in_ch + i * growth
            self.add_module(f"layer{i}_conv1", bn_relu_conv(channels, bn_size * growth, 1))
            self.add_module(f"layer{i}_conv2", bn_relu_conv(bn_size * growth, growth, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for i in range(self.num_layers):
            h = x if i == 0 else torch.cat(features, dim=1)
            h = getattr(self, f"layer{i}_conv1")(h)
            features.append(getattr(self, f"layer{i}_conv2")(h))
        return torch.cat(features, dim=1)
'''

TRANSITION = '''
class Transition(nn.Module):
    """DenseNet transition: BN-ReLU-conv1x1 (out) -> 2x2 average pool: (B, in_ch, H, W) -> (B, out, H/2, W/2)."""

    def __init__(self, in_ch: int, out: int) -> None:
        super().__init__()
        self.conv = bn_relu_conv(in_ch, out, 1)
        self.pool = nn.AvgPool2d(2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))
'''

HIGHWAY = '''
class HighwayBlock(nn.Module):
    """Convolutional highway layer (Srivastava et al. 2015): y = H(x) * T(x) + x * (1 - T(x)).

    H: conv k x k -> BN -> ReLU; T: sigmoid(conv gate_kernel(x) + b), b initialised to ``gate_bias``.
    (B, channels, H, W) -> (B, channels, H, W).
    """

    def __init__(self, channels: int, kernel: int = 3, gate_kernel: int = 3, gate_bias: float = -1.0) -> None:
        super().__init__()
        self.transform = conv_bn(channels, channels, kernel)
        self.gate = HighwayGate(channels, gate_kernel, gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.transform(x), x)
'''

ATTENTION = '''
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
'''


def _sanitize(suffix: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", suffix)


def recorded_args(graph: ArchGraph, tag: str, name: str, shapes: dict[str, Shape]) -> dict[str, Any] | None:
    """The arguments the block template was called with (``graph.blocks``), None if none were recorded."""
    args = graph.blocks.get(tag)
    return None if args is None else dict(args)


def single_source(graph: ArchGraph, name: str, members: set[str]) -> list[str] | None:
    """The one node outside ``members`` that the members read, None if there are several."""
    sources = {s for n in members for s in graph.inputs_of(n) if s not in members}
    return list(sources) if len(sources) == 1 else None


def on_one_input(template: Callable[..., str]) -> Callable[..., str]:
    """``template(graph, x, name, **args)`` called as ``(graph, [x], name, **args)``."""
    return lambda graph, sources, name, **args: template(graph, sources[0], name, **args)


@dataclass(frozen=True)
class BlockSpec:
    """How an instance of block kind ``kind`` is exported as class ``class_name``.

    ``template(graph, sources, name, **args)`` is the function that builds the block's nodes (re-run
    on a scratch graph to check an instance); ``args(graph, tag, name, shapes)`` gives its arguments
    (default: the recorded ones; ``shapes``: every node's output shape) and ``sources(graph, name,
    members)`` the nodes the block reads, in the order of the class's forward arguments (default: the
    single outside input). ``ctor(args, source_shapes)``
    gives the constructor keyword arguments. ``path(suffix, args)`` is the submodule (dotted path)
    of the node with id ``<block name>.<suffix>`` (default: ``renames`` or the sanitised suffix).
    ``source(instances)`` is the class's text for the constructor arguments of the instances a file
    uses (None: every variant, for checking); ``constant(param, kwargs)`` names the module-level
    constant a tuple-valued argument is written to. The helpers a class calls are found in its text.
    """

    kind: str
    class_name: str
    text: str | Callable[[list[dict[str, Any]] | None], str]
    template: Callable[..., str]
    ctor: Callable[[dict[str, Any], list[Shape]], dict[str, Any]]
    renames: tuple[tuple[str, str], ...] = ()
    args: Callable[[ArchGraph, str, str, dict[str, Shape]], dict[str, Any] | None] = recorded_args
    sources: Callable[[ArchGraph, str, set[str]], list[str] | None] = single_source
    paths: Callable[[str, dict[str, Any]], str] | None = None
    constant: Callable[[str, dict[str, Any]], str] | None = None

    def path(self, suffix: str, args: dict[str, Any]) -> str:
        """Submodule of the node with id ``<block name>.<suffix>``."""
        if self.paths is not None:
            return self.paths(suffix, args)
        return dict(self.renames).get(suffix, _sanitize(suffix))

    def source(self, instances: list[dict[str, Any]] | None = None) -> str:
        return self.text if isinstance(self.text, str) else self.text(instances)

    def constant_name(self, param: str, kwargs: dict[str, Any]) -> str:
        return self.constant(param, kwargs) if self.constant is not None else param.upper()


def _with_in_ch(args: dict[str, Any], shapes: list[Shape]) -> dict[str, Any]:
    return {"in_ch": shapes[0].channels, **args}


def _attention_ctor(args: dict[str, Any], shapes: list[Shape]) -> dict[str, Any]:
    if args.get("pos", "none") == "none":
        return dict(args)
    shape = shapes[0]
    length = shape.dims[1] * shape.dims[2] if shape.kind == "map" else shape.dims[0]
    return {**args, "length": length}


def _as_recorded(args: dict[str, Any], shapes: list[Shape]) -> dict[str, Any]:
    return dict(args)


BLOCKS: dict[str, BlockSpec] = {spec.kind: spec for spec in (
    BlockSpec("residual", "ResidualBlock", RESIDUAL, on_one_input(blocks.residual_block), _as_recorded,
              (("add", "relu"),)),
    BlockSpec("preact_residual", "PreActResidualBlock", PREACT_RESIDUAL, on_one_input(blocks.preact_residual_block),
              _as_recorded),
    BlockSpec("inception", "InceptionBlock", INCEPTION, on_one_input(blocks.inception_block), _with_in_ch),
    BlockSpec("dense", "DenseBlock", DENSE, on_one_input(blocks.dense_block), _with_in_ch),
    BlockSpec("transition", "Transition", TRANSITION, on_one_input(blocks.transition), _with_in_ch),
    BlockSpec("highway", "HighwayBlock", HIGHWAY, on_one_input(blocks.highway_block), _as_recorded),
    BlockSpec("attention", "AttentionBlock", ATTENTION, on_one_input(blocks.attention_block), _attention_ctor),
)}
"""Block kinds exported as named classes (the building blocks of :mod:`search_spaces.blocks`), in the
order their classes appear in a model file."""

RESET_PARAMETERS = '''
    def reset_parameters(self) -> None:
        """Initialisation used during the search: He-normal (fan-out) convs, unit/zero norm affines."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
'''


def helper_closure(names: set[str]) -> list[str]:
    """``names`` plus the helpers they depend on, in :data:`HELPERS` order."""
    needed = set(names)
    stack = list(names)
    while stack:
        for dep in HELPERS[stack.pop()][1]:
            if dep not in needed:
                needed.add(dep)
                stack.append(dep)
    return [name for name in HELPERS if name in needed]


def library_source() -> str:
    """All helpers and block classes as one module body (the generator executes it to check structures)."""
    parts = ["import math\n\nimport torch\nfrom torch import nn\n"]
    parts += [source for source, _ in HELPERS.values()]
    parts += [spec.source() for spec in BLOCKS.values()]
    return "\n".join(parts)
