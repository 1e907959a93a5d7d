"""Block templates: output shapes/channels, structure (projections, gates), and they run in torch."""

from __future__ import annotations

import pytest
import torch

from search_spaces import blocks
from search_spaces.compiler import compile_graph
from search_spaces.ir import ArchGraph
from search_spaces.ops import Shape


def start(shape: tuple[int, ...] = (8, 8, 8)) -> ArchGraph:
    g = ArchGraph()
    g.add("in", "input", shape=list(shape))
    return g


def run(g: ArchGraph) -> dict[str, Shape]:
    """Validate, compile and run a batch of 2; the torch output must have the inferred shape."""
    shapes = g.validate()
    model = compile_graph(g).eval()
    with torch.no_grad():
        y = model(torch.randn(2, *shapes[g.input].dims))
    assert tuple(y.shape) == (2, *shapes[g.output].dims)
    return shapes


def test_conv_helper() -> None:
    g = start()
    out = blocks.conv(g, "in", "c", 12, kernel=3, stride=2, dilation=2)
    assert out == "c" and g.params("c")["dilation"] == 2
    assert run(g)["c"] == Shape("map", (12, 4, 4))


@pytest.mark.parametrize(("factorized", "kernel5"), [(False, 5), (False, 3), (True, 5)])
def test_inception_concat_width(factorized: bool, kernel5: int) -> None:
    g = start((6, 7, 7))
    out = blocks.inception_block(g, "in", "inc", 4, 3, 5, 2, 3, 6, kernel5=kernel5, factorized=factorized)
    shapes = run(g)
    assert shapes[out] == Shape("map", (4 + 5 + 3 + 6, 7, 7))
    assert g.attrs(out)["merge"] == "concat"
    assert g.inputs_of(out) == ["inc.branch1", "inc.branch2.1", "inc.branch3.2" if factorized else "inc.branch3.1",
                                "inc.branch4.1"]
    assert ("inc.branch3.2" in g.graph) == factorized
    if not factorized:
        assert g.params("inc.branch3.1")["kernel"] == kernel5
    assert all(g.attrs(n)["block"] == "inception:inc" for n in g.graph if n != "in")
    assert g.params("inc.branch1")["bn_eps"] == 1e-3


@pytest.mark.parametrize(("c_in", "layers", "growth"), [(4, 1, 3), (6, 3, 4)])
def test_dense_block_width(c_in: int, layers: int, growth: int) -> None:
    g = start((c_in, 5, 5))
    out = blocks.dense_block(g, "in", "dense", layers, growth, bn_size=2)
    shapes = run(g)
    assert shapes[out] == Shape("map", (c_in + layers * growth, 5, 5))
    for i in range(layers):  # layer i sees the input and all earlier layers
        conv1 = f"dense.layer{i}.conv1"
        assert g.inputs_of(conv1) == ["in", *[f"dense.layer{j}.conv2" for j in range(i)]]
        assert g.input_shape(conv1, shapes).channels == c_in + i * growth
        assert shapes[conv1].channels == 2 * growth and g.params(conv1)["order"] == "bn-relu-conv"


@pytest.mark.parametrize(("size", "half"), [(8, 4), (7, 3)])
def test_transition_halves(size: int, half: int) -> None:
    g = start((12, size, size))
    out = blocks.transition(g, "in", "trans", 6)
    assert run(g)[out] == Shape("map", (6, half, half))


@pytest.mark.parametrize(("in_ch", "planes", "stride", "bottleneck", "projected", "out_shape"), [
    (8, 8, 1, False, False, (8, 8, 8)),
    (8, 16, 1, False, True, (16, 8, 8)),
    (8, 8, 2, False, True, (8, 4, 4)),
    (16, 4, 1, True, False, (16, 8, 8)),
    (8, 4, 1, True, True, (16, 8, 8)),
    (16, 4, 2, True, True, (16, 4, 4)),
])
def test_residual_projection_only_when_shape_changes(in_ch: int, planes: int, stride: int, bottleneck: bool,
                                                     projected: bool, out_shape: tuple[int, ...]) -> None:
    g = start((in_ch, 8, 8))
    out = blocks.residual_block(g, "in", "res", in_ch, planes, stride, bottleneck=bottleneck)
    shapes = run(g)
    assert shapes[out] == Shape("map", out_shape)
    assert ("res.downsample" in g.graph) == projected
    shortcut = "res.downsample" if projected else "in"
    body = "res.conv3" if bottleneck else "res.conv2"
    assert g.attrs(out)["merge"] == "sum" and set(g.inputs_of(out)) == {body, shortcut}
    assert g.op(out) == "act" and g.params(body)["order"] == "conv-bn"  # relu after the sum


def test_resnext_bottleneck_groups() -> None:
    g = start((64, 4, 4))
    out = blocks.residual_block(g, "in", "x", 64, 32, bottleneck=True, groups=8, base_width=4)
    shapes = run(g)
    width = int(32 * 4 / 64) * 8
    assert g.params("x.conv2")["groups"] == 8 and shapes["x.conv2"].channels == width == 16
    assert shapes[out] == Shape("map", (128, 4, 4))


@pytest.mark.parametrize(("in_ch", "planes", "stride", "bottleneck", "projected", "out_shape"), [
    (16, 4, 1, True, False, (16, 6, 6)),
    (8, 4, 2, True, True, (16, 3, 3)),
    (8, 8, 1, False, False, (8, 6, 6)),
    (8, 12, 1, False, True, (12, 6, 6)),
])
def test_preact_residual(in_ch: int, planes: int, stride: int, bottleneck: bool, projected: bool,
                         out_shape: tuple[int, ...]) -> None:
    g = start((in_ch, 6, 6))
    out = blocks.preact_residual_block(g, "in", "p", in_ch, planes, stride, bottleneck=bottleneck)
    shapes = run(g)
    assert shapes[out] == Shape("map", out_shape)
    assert ("p.downsample" in g.graph) == projected
    if projected:  # the projection reads the pre-activated input, without BN of its own
        assert g.inputs_of("p.downsample") == ["p.act1"] and g.params("p.downsample")["order"] == "conv"
    else:
        assert "in" in g.inputs_of(out)
    assert g.params("p.conv2")["order"] == "bn-relu-conv" and g.op(out) == "identity"


@pytest.mark.parametrize("gate_kernel", [1, 3])
def test_highway_keeps_shape(gate_kernel: int) -> None:
    g = start((6, 5, 5))
    out = blocks.highway_block(g, "in", "hw", 6, kernel=3, gate_kernel=gate_kernel, gate_bias=-2.0)
    shapes = run(g)
    assert shapes[out] == shapes["in"]
    assert g.attrs(out)["merge"] == "gate" and g.inputs_of(out) == ["hw.transform", "in"]
    assert g.attrs(out)["merge_params"] == {"kernel": gate_kernel, "bias": -2.0}
    gate = compile_graph(g).gates["hw_gate"]
    assert gate.transform.kernel_size == (gate_kernel, gate_kernel)
    assert torch.equal(gate.transform.bias, torch.full((6,), -2.0))


def test_highway_starts_close_to_carrying_x() -> None:
    g = start((4, 5, 5))
    blocks.highway_block(g, "in", "hw", 4, gate_bias=-20.0)
    model = compile_graph(g).eval()
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x, atol=1e-3, rtol=0)


def test_attention_block_on_tokens() -> None:
    g = start((10, 8))
    out = blocks.attention_block(g, "in", "vit", 8, heads=2, mlp_ratio=2.0)
    shapes = run(g)
    assert shapes[out] == Shape("tokens", (10, 8))
    assert shapes["vit.fc1"] == Shape("tokens", (10, 16))
    assert g.params("vit.norm1") == {"kind": "layer", "eps": 1e-6}
    assert set(g.inputs_of("vit.add1")) == {"vit.attn", "in"} and set(g.inputs_of(out)) == {"vit.fc2", "vit.add1"}


@pytest.mark.parametrize("pos", ["none", "learned", "sinusoidal"])
def test_attention_block_on_maps(pos: str) -> None:
    g = start((8, 3, 4))
    out = blocks.attention_block(g, "in", "att", 8, heads=4, tokens=False, pos=pos)
    shapes = run(g)
    assert shapes[out] == Shape("map", (8, 3, 4))
    assert shapes["att.fc1"] == Shape("map", (32, 3, 4)) and g.params("att.norm1")["kind"] == "batch"
    assert g.params("att.attn")["pos"] == pos


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_classifier_head(dropout: float) -> None:
    g = start((8, 4, 4))
    out = blocks.classifier_head(g, "in", 7, dropout=dropout)
    assert run(g)[out] == Shape("vec", (7,))
    assert ("head.dropout" in g.graph) == (dropout > 0)
    assert g.features_node() == "in"


def test_blocks_chain_into_a_network() -> None:
    g = start((3, 8, 8))
    x = blocks.conv(g, "in", "stem", 8)
    x = blocks.dense_block(g, x, "d1", 2, 4)
    x = blocks.transition(g, x, "t1", 8)
    x = blocks.highway_block(g, x, "hw", 8)
    x = blocks.attention_block(g, x, "att", 8, heads=2, tokens=False)
    x = blocks.preact_residual_block(g, x, "pre", 8, 4, stride=2)
    blocks.classifier_head(g, x, 10)
    assert run(g)[g.output] == Shape("vec", (10,))
    assert g.features_node() == "pre.add"
