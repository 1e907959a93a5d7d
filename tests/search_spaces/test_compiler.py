"""GraphModule: random graphs compile and agree with shape inference; seeds; features/head split; cost."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from strategies import reference_forward, valid_graphs

from search_spaces import blocks
from search_spaces.analysis import count_params, measure
from search_spaces.compiler import GraphModule, compile_graph
from search_spaces.errors import BadParameterError, ChannelMismatchError
from search_spaces.ir import ArchGraph


def small_cnn(num_classes: int = 5) -> ArchGraph:
    g = ArchGraph("small_cnn")
    g.add("in", "input", shape=[3, 8, 8])
    x = blocks.conv(g, "in", "stem.conv", 8)
    x = blocks.residual_block(g, x, "layer1.0", 8, 8)
    x = blocks.residual_block(g, x, "layer2.0", 8, 16, stride=2)
    blocks.classifier_head(g, x, num_classes, dropout=0.2)
    return g


def tiny_vit() -> ArchGraph:
    g = ArchGraph("tiny_vit")
    g.add("in", "input", shape=[4, 4, 4])
    x = g.add("patch", "conv", ["in"], out=8, kernel=2, stride=2, order="conv", bias=True)
    x = g.add("tokens", "to_tokens", [x], cls_token=True, pos="learned")
    x = blocks.attention_block(g, x, "block0", 8, heads=2)
    x = g.add("norm", "norm", [x], kind="layer")
    x = g.add("pool", "token_pool", [x], kind="cls")
    g.add("fc", "linear", [x], out=3)
    return g


# ------------------------------------------------------------------------------- random graphs
@settings(max_examples=60, deadline=None)
@given(valid_graphs())
def test_random_graphs_compile_and_match_shape_inference(g: ArchGraph) -> None:
    shapes = g.validate()
    model = compile_graph(g, seed=3).eval()
    assert set(model.nodes) | set(model.gates) <= set(g.graph.nodes)  # module keys are the node ids
    assert set(model.nodes) == {n for n in g.graph if g.op(n) not in ("input", "identity")}
    x = torch.randn(2, *shapes[g.input].dims)
    with torch.no_grad():
        values = reference_forward(g, model, x)
        for node, value in values.items():
            assert tuple(value.shape[1:]) == shapes[node].dims, (node, g.op(node), g.params(node))
            assert torch.isfinite(value).all(), node
        out = model(x)
        torch.testing.assert_close(out, values[g.output])
        features = model.forward_features(x)
        torch.testing.assert_close(features, values[g.features_node()])
        torch.testing.assert_close(model.forward_head(features), out)
    assert model.output_shape == shapes[g.output].dims and model.input_shape == shapes[g.input].dims


# ------------------------------------------------------------------------------- seeds and RNG
def _params(model: GraphModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("make", [small_cnn, tiny_vit])
def test_same_seed_same_weights_different_seed_different(make: Callable[[], ArchGraph]) -> None:
    a, b, c = _params(compile_graph(make(), seed=7)), _params(compile_graph(make(), seed=7)), \
        _params(compile_graph(make(), seed=8))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    random_init = [k for k in a if k.endswith("weight") and a[k].dim() > 1]  # convs and linears
    assert random_init and all(not torch.equal(a[k], c[k]) for k in random_init)
    assert any(k.endswith(("cls_token", "pos.pos")) for k in a) == (make is tiny_vit)


def test_compiling_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    compile_graph(small_cnn(), seed=5)
    compile_graph(tiny_vit(), seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), expected)


def test_default_init_is_he_normal_and_unit_norms() -> None:
    model = compile_graph(small_cnn(), seed=0)
    conv = model.nodes["layer1_0_conv1"][0]
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert abs(conv.weight.std().item() - (2.0 / fan_out) ** 0.5) < 0.25 * (2.0 / fan_out) ** 0.5
    bn = model.nodes["layer1_0_conv1"][1]
    assert torch.equal(bn.weight, torch.ones(8)) and torch.equal(bn.bias, torch.zeros(8))


# ------------------------------------------------------------------------------- structure
def test_state_dict_keys_are_readable_node_ids() -> None:
    model = compile_graph(small_cnn())
    keys = set(model.state_dict())
    assert {"nodes.stem_conv.0.weight", "nodes.layer2_0_downsample.0.weight", "nodes.head_fc.weight",
            "nodes.head_fc.bias", "nodes.layer1_0_conv2.1.running_mean"} <= keys
    assert {k.split(".")[1] for k in keys} == {  # one entry per node with a module (no identity/act params)
        "stem_conv", "layer1_0_conv1", "layer1_0_conv2", "layer2_0_conv1", "layer2_0_conv2",
        "layer2_0_downsample", "head_fc"}
    g = ArchGraph()
    g.add("in", "input", shape=[4, 6, 6])
    g.add("a.b", "conv", ["in"], out=4)
    g.add("a_b", "conv", ["a.b"], out=4)
    g.add("train", "conv", ["a_b"], out=4)  # shadows a ModuleDict method
    g.add("hw gate", "identity", ["train", "a_b"], merge="gate")
    model = compile_graph(g)
    assert set(model.nodes) == {"a_b", "a_b_", "train_"} and set(model.gates) == {"hw_gate"}
    model(torch.randn(2, 4, 6, 6))


def test_features_and_head_split() -> None:
    for g in (small_cnn(), tiny_vit()):
        model = compile_graph(g).eval()
        x = torch.randn(2, *model.input_shape)
        with torch.no_grad():
            features = model.forward_features(x)
            out = model(x)
            torch.testing.assert_close(model.forward_head(features), out)
            torch.testing.assert_close(model(x), out)  # no state kept between calls
        assert out.shape == (2, *model.output_shape)
    assert compile_graph(small_cnn()).forward_features(torch.randn(2, 3, 8, 8)).shape == (2, 16, 4, 4)
    assert compile_graph(tiny_vit()).forward_features(torch.randn(2, 4, 4, 4)).shape == (2, 5, 8)


def test_features_default_to_output_without_pooling() -> None:
    g = ArchGraph()
    g.add("in", "input", shape=[3, 6, 6])
    g.add("c", "conv", ["in"], out=4)
    model = compile_graph(g).eval()
    x = torch.randn(2, 3, 6, 6)
    features = model.forward_features(x)
    assert torch.equal(features, model(x))
    assert model.forward_head(features) is features


def test_head_must_not_read_from_before_the_features_node() -> None:
    g = ArchGraph()
    g.add("in", "input", shape=[3, 6, 6])
    g.add("c", "conv", ["in"], out=4)
    g.add("pool", "global_pool", ["c"])
    g.add("side", "global_pool", ["in"])
    g.add("cat", "identity", ["pool", "side"], merge="concat")
    with pytest.raises(BadParameterError) as info:
        compile_graph(g)
    assert info.value.node == "side"
    g.features = "cat"  # the explicit features node makes it compile
    model = compile_graph(g)
    assert model.forward_features(torch.randn(2, 3, 6, 6)).shape == (2, 7)


def test_compile_validates() -> None:
    g = ArchGraph()
    g.add("in", "input", shape=[3, 6, 6])
    g.add("a", "conv", ["in"], out=4)
    g.add("s", "identity", ["a", "in"], merge="sum")
    with pytest.raises(ChannelMismatchError) as info:
        compile_graph(g)
    assert info.value.node == "s"


def test_module_records_shapes_and_hash() -> None:
    g = small_cnn()
    model = compile_graph(g, device="cpu")
    assert model.arch_hash == g.canonical_hash()
    assert model.input_shape == (3, 8, 8) and model.output_shape == (5,)


def test_backward_through_a_whole_network() -> None:
    model = compile_graph(tiny_vit(), seed=2).train()
    x = torch.randn(3, 4, 4, 4)
    model(x).logsumexp(dim=1).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing


# ------------------------------------------------------------------------------- cost
def test_measure_tiny_graph_by_hand() -> None:
    """conv 3->4 (3x3, stride 2, bias, + ReLU) on 3x8x8, global pool, linear 4->10.

    params: conv 4*3*3*3 + 4 = 112, linear 4*10 + 10 = 50 -> 162.
    FLOPs (multiply-add = 2): conv 2 * (4*4*4 outputs) * (3*3*3 MACs each) = 3456;
    linear 2 * 4 * 10 = 80 -> 3536 (bias adds, ReLU and pooling are not counted by torch).
    """
    g = ArchGraph()
    g.add("in", "input", shape=[3, 8, 8])
    g.add("conv", "conv", ["in"], out=4, kernel=3, stride=2, bias=True, order="conv-relu")
    g.add("pool", "global_pool", ["conv"])
    g.add("fc", "linear", ["pool"], out=10)
    cost = measure(g)
    assert cost.params == 162 == count_params(g)
    assert cost.flops == 3536 and cost.macs == 1768
    g.graph.nodes["conv"]["params"]["order"] = "conv-bn-relu"  # BN adds 2*4 parameters
    assert count_params(g) == 170


def test_measure_counts_grouped_conv_and_attention() -> None:
    g = ArchGraph()
    g.add("in", "input", shape=[4, 2, 2])
    g.add("conv", "conv", ["in"], out=4, kernel=1, groups=2, order="conv")  # 4 * (2*1*1) = 8 weights
    g.add("attn", "mhsa", ["conv"], heads=1, qkv_bias=False)  # qkv 4*12, proj 4*4 + 4
    cost = measure(g)
    assert cost.params == 8 + 48 + 20
    n, d = 4, 4
    conv = 2 * (4 * n) * 2
    qkv, proj = 2 * n * d * 3 * d, 2 * n * d * d
    attention = 2 * (2 * n * n * d)  # q @ k^T and attn @ v
    assert cost.flops == conv + qkv + proj + attention
