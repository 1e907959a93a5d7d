"""Model source export: generated files equal the compiled graphs, stand alone, pass ruff, name their blocks.

Structure finding (stages, cells, groups) is tested in test_export_structure.py, timm's model contract in
test_export_contract.py."""

from __future__ import annotations

import importlib.util
import itertools
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from datapaths import REPO
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nas.export import GeneratedModel, generate_model_source
from nas.export.templates import BLOCKS
from search_spaces import blocks
from search_spaces.compiler import GraphModule
from search_spaces.errors import ArchGraphError
from search_spaces.ir import ArchGraph
from search_spaces.ops import POSITIONAL
from search_spaces.reference import create_model, list_models
from search_spaces.spaces.darts import DARTS_V2, DartsSpace
from search_spaces.spaces.macro import MacroArch, MacroSpace, StageChoice
from search_spaces.spaces.nb201 import NB201Space, parse_arch_string

RUFF = REPO / ".venv" / "bin" / "ruff"
PYPROJECT = REPO / "pyproject.toml"
NB201_6111 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
_counter = itertools.count()


def _strategies() -> types.ModuleType:
    """tests/search_spaces/strategies.py (the random-graph strategy), importable from this directory."""
    if "strategies" not in sys.modules:
        spec = importlib.util.spec_from_file_location("strategies", REPO / "tests" / "search_spaces" / "strategies.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["strategies"] = module
        spec.loader.exec_module(module)
    return sys.modules["strategies"]


# ----------------------------------------------------------------------------- helpers
def load_source(source: str, path: Path | None = None) -> types.ModuleType:
    """Import ``source`` as a fresh module (from ``path`` when given, else from memory)."""
    name = f"exported_model_{next(_counter)}"
    if path is None:
        module = types.ModuleType(name)
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)
        return module
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ruff_errors(source: str) -> str:
    """ruff's findings on ``source`` under the repository's configuration ('' when clean)."""
    result = subprocess.run([str(RUFF), "check", "--config", str(PYPROJECT), "--no-cache", "--stdin-filename",
                             "exported_model.py", "-"], input=source, capture_output=True, text=True, check=False)
    return "" if result.returncode == 0 else result.stdout + result.stderr


def perturb(model: torch.nn.Module, seed: int = 0) -> None:
    """Move every parameter and BN statistic off its initial value (so a mis-mapped weight shows)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.add_(torch.randn(tensor.shape, generator=gen) * 0.1)


def check_equivalent(graph: ArchGraph, path: Path | None = None, batch: int = 2,
                     **kwargs: Any) -> tuple[GeneratedModel, torch.nn.Module, GraphModule]:
    """Export ``graph``, load the compiled weights through the key map (strict) and compare in eval mode."""
    generated = generate_model_source(graph, **kwargs)
    module = load_source(generated.source, path)
    compiled = GraphModule(graph, seed=1)
    perturb(compiled)
    exported = getattr(module, generated.class_name)()
    state = compiled.state_dict()
    assert list(generated.key_map) == list(state)
    assert sorted(generated.key_map.values()) == sorted(exported.state_dict())
    exported.load_state_dict(generated.map_state_dict(state), strict=True)
    compiled.eval()
    exported.eval()
    x = torch.randn(batch, *compiled.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), compiled(x), atol=1e-6, rtol=0)
        features = compiled.forward_features(x)
        torch.testing.assert_close(exported.forward_features(x), features, atol=1e-6, rtol=0)
        torch.testing.assert_close(exported.forward_head(features), compiled.forward_head(features), atol=1e-6,
                                   rtol=0)
    return generated, exported, compiled


def classes(source: str) -> set[str]:
    return set(re.findall(r"^class (\w+)\(", source, re.MULTILINE))


# ----------------------------------------------------------------------------- graphs
REFERENCE_KWARGS: dict[str, dict[str, Any]] = {
    "vgg11": {"width_mult": 1 / 16, "hidden": 16, "pool_size": 2},
    "vgg13": {"width_mult": 1 / 16, "hidden": 16, "pool_size": 2},
    "vgg16": {"width_mult": 1 / 16, "hidden": 16, "pool_size": 2},
    "vgg19": {"width_mult": 1 / 16, "hidden": 16, "pool_size": 2},
    "densenet121": {"growth": 4},
    "densenet169": {"growth": 4},
    "densenet201": {"growth": 4},
    "highwaynet": {"widths": (8, 16), "depths": (2, 2), "stem_stride": 1},
    "vit_tiny_patch16_224": {"patch_size": 8},
}


def reference(name: str) -> ArchGraph:
    return create_model(name, num_classes=5, img_size=32, **REFERENCE_KWARGS.get(name, {}))


def every_op_graph() -> ArchGraph:
    """Every op and merge kind (maps, tokens, vectors), awkward node ids, an explicit features node."""
    g = ArchGraph('every op "graph"\\')
    g.add("in", "input", shape=[4, 8, 8])
    g.add("0", "conv", ["in"], out=8, kernel=3, padding=2, dilation=2, groups=2, bias=True, order="bn-relu-conv",
          act="silu")
    g.add("class", "conv", ["0"], out=8, kernel=4, stride=2, padding=1, order="relu-conv-bn", act="gelu", bn_eps=1e-3)
    g.add("x", "sep_conv", ["class"], out=8, kernel=3, repeats=2)
    g.add("features", "sep_conv", ["class"], out=8, kernel=5, dilation=2, repeats=1)
    g.add("torch", "identity", ["x", "features"], merge="gate", merge_params={"kernel": 3, "bias": 0.5})
    g.add("self", "conv", ["torch", "x", "features"], merge="sum", out=8, kernel=1, bias=True, order="conv-relu",
          act="tanh")
    g.add("train", "act", ["self"], fn="sigmoid")
    g.add("a-b.c", "norm", ["train"], kind="batch", eps=1e-4)
    g.add("forward", "pool", ["a-b.c"], kind="max", kernel=2, stride=2, ceil_mode=True)
    g.add("l", "pool", ["a-b.c"], kind="avg", kernel=3, stride=2, padding=1, count_include_pad=False)
    g.add("fr", "factorized_reduce", ["a-b.c"], out=6)
    g.add("zero", "zero", ["a-b.c"], stride=2)
    g.add("cat", "dropout", ["forward", "l", "fr", "zero"], merge="concat", p=0.1)
    g.add("attn", "mhsa", ["cat"], heads=2, qkv_bias=False, pos="sinusoidal")
    g.add("skip", "identity", ["attn"])
    g.add("tok", "to_tokens", ["skip"], cls_token=False, pos="sinusoidal")
    g.add("t.attn", "mhsa", ["tok"], heads=3, pos="learned")
    g.add("t.ln", "norm", ["t.attn"], kind="layer", eps=1e-6)
    g.add("t.fc", "linear", ["t.ln"], out=10, bias=False)
    g.add("t.gelu", "act", ["t.fc"], fn="gelu")
    g.add("t.zero", "zero", ["t.gelu"])
    g.add("t.gate", "dropout", ["t.gelu", "t.zero"], merge="gate", merge_params={"kernel": 2, "bias": -2.0}, p=0.0)
    g.add("t.cat", "identity", ["t.gate", "t.fc"], merge="concat")
    g.add("t.sum", "mhsa", ["t.gate", "t.fc"], merge="sum", heads=5, pos="none")
    g.add("vec.mean", "token_pool", ["t.cat"], kind="mean")
    g.add("vec.flat", "flatten", ["t.sum"])
    g.add("vec.flat_fc", "linear", ["vec.flat"], out=20)
    g.add("vec.adapt", "adaptive_pool", ["skip"], kind="max", size=2)
    g.add("vec.adapt_avg", "adaptive_pool", ["vec.adapt"], kind="avg", size=1)
    g.add("vec.flat2", "flatten", ["vec.adapt_avg"])
    g.add("vec.gmax", "global_pool", ["skip"], kind="max")
    g.add("vec.gavg", "global_pool", ["skip"], kind="avg")
    g.add("vec.sum", "identity", ["vec.gmax", "vec.gavg", "vec.flat2"], merge="sum")
    g.add("vec.cls", "token_pool", ["tok"], kind="cls")
    g.add("vec.gate", "linear", ["vec.mean", "vec.flat_fc"], merge="gate", out=20)
    g.add("vec.cat", "identity", ["vec.sum", "vec.cls"], merge="concat")
    g.add("vec.cat_fc", "linear", ["vec.cat"], out=20)
    g.add("merge", "identity", ["vec.gate", "vec.cat_fc"], merge="sum")
    g.features = "merge"
    g.add("head.bn", "norm", ["merge"], kind="batch")
    g.add("head.ln", "norm", ["head.bn"], kind="layer")
    g.add("head.act", "act", ["head.ln"], fn="relu")
    g.add("head.drop", "dropout", ["head.act"], p=0.5)
    g.add("head.fc", "linear", ["head.drop"], out=5)
    return g


MACRO_SPACE = MacroSpace(input_shape=(3, 8, 8), num_classes=5, widths=(8, 16), depths=(1, 2), kernels=(3, 5))
MACRO_ARCHS = [
    MacroArch((StageChoice("attention", 8, 2, 3, True), StageChoice("highway", 16, 2, 5, True),
               StageChoice("inception", 16, 1, 5, False))),
    MacroArch((StageChoice("residual", 8, 2, 3, True), StageChoice("dense", 16, 2, 3, True),
               StageChoice("conv", 16, 2, 5, True))),
    MacroArch((StageChoice("highway", 16, 1, 3, False), StageChoice("attention", 16, 1, 5, True),
               StageChoice("residual", 8, 1, 5, False))),
]


def sampled_macro(seed: int) -> MacroArch:
    return MACRO_SPACE.sample(np.random.default_rng(seed))


# ----------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("name", list_models())
def test_reference_models_export_exactly(name: str) -> None:
    generated, _, _ = check_equivalent(reference(name))
    assert "search_spaces" not in generated.source


@pytest.mark.parametrize(("space", "arch"), [
    (NB201Space(C=4, N=1, num_classes=5), parse_arch_string(
        "|none~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|skip_connect~2|")),
    (NB201Space(), parse_arch_string(NB201_6111)),
    (DartsSpace(C=4, layers=3, num_classes=5, input_shape=(3, 16, 16)), DARTS_V2),
    (DartsSpace(C=4, layers=3, num_classes=5, input_shape=(3, 16, 16)), "random"),
    (DartsSpace(C=6, layers=5, num_classes=5, input_shape=(3, 16, 16)), DARTS_V2),
    *[(MACRO_SPACE, arch) for arch in MACRO_ARCHS],
    (MACRO_SPACE, "random"),
    (MACRO_SPACE, "random2"),
], ids=["nb201-small", "nb201-6111", "darts-v2", "darts-random", "darts-v2-5", "macro-a", "macro-b", "macro-c",
        "macro-random", "macro-random2"])
def test_search_space_members_export_exactly(space: Any, arch: Any, tmp_path: Path) -> None:
    if arch == "random":
        arch = space.sample(np.random.default_rng(3))
    elif arch == "random2":
        arch = space.sample(np.random.default_rng(11))
    generated, _, _ = check_equivalent(space.to_graph(arch), tmp_path / "model.py")
    assert not ruff_errors(generated.source)


def test_every_op_and_merge_exports_exactly(tmp_path: Path) -> None:
    generated, exported, _ = check_equivalent(every_op_graph(), tmp_path / "every_op.py", batch=3)
    assert not ruff_errors(generated.source)
    assert {"FactorizedReduce", "Zero", "SelfAttention", "PositionalEncoding", "ToTokens",
            "HighwayGate"} <= classes(generated.source)
    # stateless reshaping ops are tensor methods in the forward, not modules
    assert "GlobalPool" not in generated.source and "TokenPool" not in generated.source
    for functional in (".amax(dim=(2, 3))", ".mean(dim=(2, 3))", "[:, 0]", ".mean(dim=1)", ".flatten(1)"):
        assert functional in generated.source
    assert "import math" in generated.source  # the sinusoidal encoding
    assert exported.__class__.__name__ == "Net"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_strategies().valid_graphs())
def test_random_graphs_export_exactly(graph: ArchGraph) -> None:
    generated, _, _ = check_equivalent(graph)
    assert not ruff_errors(generated.source)


@st.composite
def block_graphs(draw: st.DrawFn) -> tuple[str, ArchGraph]:
    """One block template with random arguments between an input map and a classifier head."""
    kind = draw(st.sampled_from(sorted(BLOCKS)))
    c, size = draw(st.integers(1, 8)), draw(st.sampled_from([4, 5, 6]))
    g = ArchGraph(f"random {kind}")
    x = g.add("in", "input", shape=[c, size, size])
    odd = st.sampled_from([1, 3, 5])
    try:
        if kind == "residual":
            bottleneck = draw(st.booleans())
            blocks.residual_block(g, x, "b", c, draw(st.integers(1, 6)), draw(st.integers(1, 2)), bottleneck,
                                  draw(st.integers(1, 3)) if bottleneck else 1, draw(st.sampled_from([64, 100, 128])),
                                  draw(st.integers(1, 4)), draw(odd))
        elif kind == "preact_residual":
            blocks.preact_residual_block(g, x, "b", c, draw(st.integers(1, 6)), draw(st.integers(1, 2)),
                                         draw(st.booleans()), draw(st.integers(1, 4)))
        elif kind == "inception":
            widths = draw(st.lists(st.integers(1, 4), min_size=6, max_size=6))
            blocks.inception_block(g, x, "b", *widths, kernel5=draw(st.sampled_from([3, 5])),
                                   factorized=draw(st.booleans()), bn_eps=draw(st.sampled_from([1e-3, 1e-5])))
        elif kind == "dense":
            blocks.dense_block(g, x, "b", draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4)),
                               draw(odd))
        elif kind == "transition":
            blocks.transition(g, x, "b", draw(st.integers(1, 6)))
        elif kind == "highway":
            blocks.highway_block(g, x, "b", c, draw(odd), draw(st.sampled_from([1, 3])),
                                 draw(st.sampled_from([-1.0, 0.5])))
        else:
            tokens = draw(st.booleans())
            if tokens:
                x = g.add("tok", "to_tokens", [x], cls_token=draw(st.booleans()),
                          pos=draw(st.sampled_from(POSITIONAL)))
            heads = draw(st.sampled_from([h for h in range(1, c + 1) if c % h == 0]))
            blocks.attention_block(g, x, "b", c, heads, draw(st.sampled_from([0.5, 1.0, 2.5])), tokens,
                                   draw(st.booleans()), draw(st.sampled_from(POSITIONAL)))
        out = g.output
        if g.validate()[out].kind == "map":
            blocks.classifier_head(g, out, 3)
        else:
            g.add("head.fc", "linear", [g.add("head.pool", "token_pool", [out])], out=3)
    except ArchGraphError:  # e.g. an MLP narrower than one channel
        assume(False)
    return kind, g


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block_graphs())
def test_block_classes_fit_every_argument_combination(case: tuple[str, ArchGraph]) -> None:
    kind, graph = case
    generated, _, _ = check_equivalent(graph)
    assert f"self.b = {BLOCKS[kind].class_name}(" in generated.source


def test_blocks_after_the_features_node_go_to_the_head() -> None:
    graph = _small_resnet()
    graph.features = "stem.conv"
    generated, _, _ = check_equivalent(graph)
    head = generated.source[generated.source.index("def forward_head"):]
    assert "x = self.layer1(x)" in head and "x = self.layer4(x)" in head


def test_train_mode_matches_after_seeding() -> None:
    graph = reference("googlenet")  # BN batch statistics and head dropout
    generated, exported, compiled = check_equivalent(graph)
    compiled.train()
    exported.train()
    x = torch.randn(4, *compiled.input_shape)
    torch.manual_seed(7)
    expected = compiled(x)
    torch.manual_seed(7)
    torch.testing.assert_close(exported(x), expected, atol=1e-6, rtol=0)
    moved = generated.map_state_dict(compiled.state_dict())
    for key, value in exported.state_dict().items():  # running statistics updated alike
        torch.testing.assert_close(value, moved[key], atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- named block classes
@pytest.mark.parametrize(("name", "expected", "snippets"), [
    ("resnet18", {"ResidualBlock"},
     ["self.layer1 = nn.Sequential(*[ResidualBlock(in_ch=64, planes=64) for _ in range(2)])",
      "ResidualBlock(in_ch=in_ch, planes=128, stride=stride)", "for in_ch, stride in ((64, 2), (128, 1))"]),
    ("resnext50_32x4d", {"ResidualBlock"}, ["bottleneck=True, groups=32, base_width=4)"]),
    ("preact_resnet50", {"PreActResidualBlock"},
     ["self.layer1 = nn.Sequential(*[PreActResidualBlock(in_ch=in_ch, planes=64) for in_ch in (64, 256, 256)])"]),
    ("googlenet", {"InceptionBlock"}, ["self.inception3 = nn.Sequential(*[", "(192, 64, 96, 128, 16, 32, 32)",
                                       "self.maxpool3 = nn.MaxPool2d("]),
    ("densenet121", {"DenseBlock", "Transition"}, ["self.denseblock1 = DenseBlock(in_ch=8, num_layers=6, growth=4)",
                                                   "self.transition1 = Transition(in_ch=32, out=16)"]),
    ("highwaynet", {"HighwayBlock", "HighwayGate"},
     ["self.stage0 = nn.Sequential(*[HighwayBlock(channels=8) for _ in range(2)])"]),
    ("vit_tiny_patch16_224", {"AttentionBlock", "SelfAttention", "PositionalEncoding", "ToTokens"},
     ["self.blocks = nn.Sequential(*[AttentionBlock(dim=192, heads=3) for _ in range(12)])"]),
    ("vgg16", set(), ["nn.Conv2d(in_chans, 4, kernel_size=3, padding=1)", "self.features4 = nn.Sequential("]),
])
def test_block_kinds_become_named_classes(name: str, expected: set[str], snippets: list[str]) -> None:
    source = generate_model_source(reference(name)).source
    assert classes(source) == expected | {"Net"}
    for snippet in snippets:
        assert snippet in source
    assert not ruff_errors(source)


def test_space_glue_is_inline() -> None:
    macro = generate_model_source(MACRO_SPACE.to_graph(MACRO_ARCHS[0])).source
    # the stage's channel adaptation and embedding share their block tag with the first block: inline
    assert "self.stage1_adapt = conv_bn(8, 16, 1)" in macro and "self.stage0_embed = conv_bn(16, 8, 3)" in macro
    assert "self.stage1 = nn.Sequential(*[HighwayBlock(channels=16, kernel=5) for _ in range(2)])" in macro
    assert 'AttentionBlock(dim=8, heads=1, tokens=False, pos="learned", length=64)' in macro
    darts = generate_model_source(DartsSpace(C=4, layers=3, input_shape=(3, 16, 16)).to_graph(DARTS_V2)).source
    assert "self.stem = nn.Sequential(nn.Conv2d(in_chans, 12, kernel_size=3, padding=1, bias=False)" in darts


# ----------------------------------------------------------------------------- fallbacks
def _small_resnet() -> ArchGraph:
    return create_model("resnet18_cifar", num_classes=5, img_size=8)


@pytest.mark.parametrize(("tamper", "inline"), [
    (lambda g: g.blocks["residual:layer1.0"].update(kernel=5), "layer1_0"),  # args do not rebuild the nodes
    (lambda g: g.blocks["residual:layer2.0"].update(in_ch=32), "layer2_0"),  # same nodes, other class modules
    (lambda g: g.blocks["residual:layer3.0"].update(unknown=1), "layer3_0"),  # template rejects the args
    (lambda g: g.blocks["residual:layer3.1"].update(planes="256"), "layer3_1"),
    (lambda g: g.graph.nodes["layer1.1.conv2"]["params"].update(bn_eps=1e-3), "layer1_1"),  # edited node
])
def test_mismatching_block_instances_fall_back_to_inline(tamper: Callable[[ArchGraph], None], inline: str) -> None:
    graph = _small_resnet()
    tamper(graph)
    generated, _, _ = check_equivalent(graph)
    # the instance's convs as one nn.Sequential of its block, the rest of its nodes beside it
    assert f"self.{inline} = nn.Sequential(conv_bn(" in generated.source
    assert f"self.{inline}_add = nn.ReLU()" in generated.source
    sibling = inline[:-1] + ("1" if inline.endswith("0") else "0")  # its stage's other block keeps the class
    assert f"self.{sibling} = ResidualBlock(" in generated.source
    assert "self.layer4 = nn.Sequential(*[" in generated.source  # so do the other stages
    assert not ruff_errors(generated.source)


def test_block_with_an_internal_node_read_outside_falls_back() -> None:
    g = ArchGraph("leaky")
    g.add("in", "input", shape=[4, 6, 6])
    x = blocks.residual_block(g, "in", "res", 4, 4)
    h = g.add("tap", "identity", [x, "res.conv1"], merge="sum")
    blocks.classifier_head(g, h, 3)
    generated, _, _ = check_equivalent(g)
    assert "class ResidualBlock" not in generated.source and "self.res_conv1 = " in generated.source


def test_unused_kinds_and_helpers_are_not_emitted() -> None:
    g = ArchGraph("one transition")
    g.add("in", "input", shape=[4, 6, 6])
    x = blocks.transition(g, "in", "t", 2)
    g.add("flat", "flatten", [x])
    generated, _, _ = check_equivalent(g)
    assert classes(generated.source) == {"Transition", "Net"}
    assert "def bn_relu_conv(" in generated.source and "def conv_bn(" not in generated.source
    assert "import math" not in generated.source


# ----------------------------------------------------------------------------- file properties
def test_source_is_deterministic() -> None:
    graph = MACRO_SPACE.to_graph(MACRO_ARCHS[0])
    first = generate_model_source(graph, header={"trial": 1}).source
    assert generate_model_source(graph, header={"trial": 1}).source == first
    assert generate_model_source(ArchGraph.from_json(graph.to_json()), header={"trial": 1}).source == first
    assert generate_model_source(MACRO_SPACE.to_graph(MACRO_ARCHS[0]), header={"trial": 1}).source == first


def test_header_lists_hash_and_entries(tmp_path: Path) -> None:
    graph = reference("resnet18_cifar")
    header = {"run directory": "/runs/" + "very-long-directory-name/" * 8 + "end", "trial": 7,
              "metrics": {"val_acc": 0.9312, "params": 11173962}, "tags": ["a", "b"],
              "note": 'quotes """ and \\backslashes\\ and a\ttab\nsecond line', "unicode": "größe"}
    generated = generate_model_source(graph, class_name="Winner", header=header)
    assert not ruff_errors(generated.source)
    module = load_source(generated.source, tmp_path / "winner.py")
    doc = module.__doc__
    assert graph.canonical_hash() in doc
    for text in ("trial: 7", "metrics:", "    val_acc: 0.9312", "    params: 11173962", "tags: [a, b]",
                 'quotes """ and \\backslashes\\ and a\\ttab', "second line", "unicode: größe", "very-long-directory"):
        assert text in doc
    assert generated.class_name == "Winner" and hasattr(module, "Winner")
    assert max(len(line) for line in generated.source.splitlines()) <= 120


def test_bad_class_names_are_refused() -> None:
    graph = _small_resnet()
    for name in ("class", "9Net", "my-net", "torch", "ResidualBlock", "GlobalPool", "Cell", "PRETRAINED_CFG"):
        with pytest.raises(ValueError, match="class_name"):
            generate_model_source(graph, class_name=name)


def test_files_run_standalone_without_nas(tmp_path: Path) -> None:
    graphs = {"resnet": reference("resnet18_cifar"), "every_op": every_op_graph(),
              "darts": DartsSpace(C=4, layers=3, input_shape=(3, 16, 16)).to_graph(DARTS_V2),
              "macro": MACRO_SPACE.to_graph(MACRO_ARCHS[0]), "vit": reference("vit_tiny_patch16_224")}
    expected = {}
    for name, graph in graphs.items():
        source = generate_model_source(graph).source
        imports = {line for line in source.splitlines() if line.startswith(("import ", "from "))}
        assert imports <= {"import math", "from typing import Any", "import torch", "from torch import nn"}
        (tmp_path / f"{name}.py").write_text(source)
        expected[name] = (2, *graph.validate()[graph.output].dims)
    script = textwrap.dedent("""
        import importlib.abc
        import runpy
        import sys

        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in {"nas", "search_spaces", "models"}:
                    raise ImportError("blocked " + name)
                return None

        sys.meta_path.insert(0, Blocker())
        try:
            import nas  # noqa: F401
        except ImportError:
            print("nas: not importable")
        for path in sys.argv[1:]:
            runpy.run_path(path, run_name="__main__")
    """)
    result = subprocess.run([sys.executable, "-I", "-c", script, *(str(tmp_path / f"{n}.py") for n in graphs)],
                            cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "nas: not importable"
    assert lines[1:] == [f"torch.Size({list(shape)})" for shape in expected.values()]
