"""timm's model contract in exported files (nas.export.contract): constructor arguments, classifier methods,
pre-logits, PRETRAINED_CFG and create_model(pretrained=...) with its weights-file checks."""

from __future__ import annotations

import shutil
import types
from pathlib import Path

import pytest
import torch
from test_export_codegen import _small_resnet, every_op_graph, load_source, perturb, reference

from nas.export import generate_model_source
from nas.export.exporter import export, import_source
from nas.export.pretrained import Normalisation
from search_spaces import blocks
from search_spaces.compiler import GraphModule
from search_spaces.ir import ArchGraph
from search_spaces.spaces.darts import DARTS_V2, DartsSpace
from search_spaces.spaces.nb201 import NB201Space, parse_arch_string

NB201_6111 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
GRAPHS = {
    "resnet": _small_resnet,
    "nb201": lambda: NB201Space(C=4, N=1, num_classes=5).to_graph(parse_arch_string(NB201_6111)),
    "darts": lambda: DartsSpace(C=4, layers=3, num_classes=5, input_shape=(3, 16, 16)).to_graph(DARTS_V2),
    "vit": lambda: reference("vit_tiny_patch16_224"),
    "googlenet": lambda: reference("googlenet"),
}


def module_of(graph: ArchGraph) -> types.ModuleType:
    return load_source(generate_model_source(graph).source)


def no_classifier_graph() -> ArchGraph:
    g = ArchGraph("no classifier")
    g.add("in", "input", shape=[4, 6, 6])
    g.add("flat", "flatten", [blocks.transition(g, "in", "t", 2)])
    return g


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_reset_classifier_and_pre_logits(name: str) -> None:
    graph = GRAPHS[name]()
    model = module_of(graph).create_model().eval()
    x = torch.randn(2, *graph.validate()[graph.input].dims)
    with torch.no_grad():
        features = model.forward_features(x)
        pre = model.forward_head(features, pre_logits=True)
        assert pre.shape == (2, model.num_features)
        torch.testing.assert_close(model.get_classifier()(pre), model(x))
        model.reset_classifier(7)
        assert model(x).shape == (2, 7) and model.num_classes == 7
        assert isinstance(model.get_classifier(), torch.nn.Linear) and model.get_classifier().out_features == 7
        model.reset_classifier(0)  # no classifier: the head gives the pre-logits
        torch.testing.assert_close(model(x), pre)


def test_constructor_takes_timms_arguments() -> None:
    module = module_of(_small_resnet())
    model = module.create_model(num_classes=3, in_chans=1, drop_rate=0.25)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert model.head_drop.p == 0.25 and model.pretrained_cfg["first_conv"] == "stem_conv.0"
    assert isinstance(model.get_submodule(model.pretrained_cfg["first_conv"]), torch.nn.Conv2d)
    assert model.get_submodule(model.pretrained_cfg["classifier"]) is model.get_classifier()


def test_the_graphs_own_dropout_before_the_classifier_is_the_head_dropout() -> None:
    graph = reference("googlenet")  # head: pool -> dropout 0.2 -> linear
    generated = generate_model_source(graph)
    model = load_source(generated.source).create_model()
    assert model.head_drop.p == 0.2 and "drop_rate: float = 0.2" in generated.source
    assert generated.key_map["nodes.head_fc.weight"] == "head_fc.weight"
    assert model.get_classifier().in_features == model.num_features == 1024


def test_dropout_rate_acts_in_training_only() -> None:
    model = module_of(_small_resnet()).create_model(drop_rate=0.9)
    features = torch.randn(4, 512, 1, 1)
    model.eval()
    torch.testing.assert_close(model.forward_head(features, pre_logits=True), features.flatten(1))
    model.train()
    torch.manual_seed(0)
    dropped = model.forward_head(features, pre_logits=True)
    assert (dropped == 0).float().mean() > 0.5


def test_numbers_an_architecture_fixes_are_refused_clearly() -> None:
    module = module_of(every_op_graph())  # its first conv has groups=2: the input channels are fixed
    with pytest.raises(ValueError, match=r"in_chans=3: the first layers of this architecture take 4 channels"):
        module.create_model(in_chans=3)
    assert module.create_model(in_chans=4)(torch.randn(2, 4, 8, 8)).shape == (2, 5)
    module = module_of(no_classifier_graph())
    with pytest.raises(ValueError, match=r"num_classes=10: this architecture has no linear classifier; it outputs 18"):
        module.create_model(num_classes=10)
    model = module.create_model()
    with pytest.raises(ValueError, match="no linear classifier"):
        model.reset_classifier(3)
    assert module.PRETRAINED_CFG["classifier"] is None and module.PRETRAINED_CFG["num_classes"] == 18


def test_pretrained_cfg_describes_the_input_the_weights_expect() -> None:
    norm = Normalisation("digits", (0.25,), (0.5,), 16.0)
    g = ArchGraph("gray")
    g.add("in", "input", shape=[1, 6, 6])
    blocks.classifier_head(g, blocks.conv(g, "in", "stem", 4), 3)
    generated = generate_model_source(g, normalisation=norm, weights_file="gray.safetensors")
    module = load_source(generated.source)
    assert module.PRETRAINED_CFG == generated.pretrained_cfg == {
        "file": "gray.safetensors", "arch_hash": g.canonical_hash(), "num_classes": 3, "input_size": (1, 6, 6),
        "dataset": "digits", "max_pixel_value": 16.0, "mean": (0.25,), "std": (0.5,), "first_conv": "stem.0",
        "classifier": "head_fc"}
    model = module.create_model()
    assert model.pretrained_cfg == model.default_cfg == module.PRETRAINED_CFG
    assert model.pretrained_cfg is not module.PRETRAINED_CFG  # a copy per model, as in timm
    default = load_source(generate_model_source(g).source).PRETRAINED_CFG  # no data: the identity
    assert default["file"] is None and default["dataset"] is None and default["mean"] == (0.0,)
    assert default["std"] == (1.0,) and default["max_pixel_value"] == 1.0


def test_create_model_pretrained_loads_the_weights_beside_the_file(tmp_path: Path) -> None:
    graph = _small_resnet()
    compiled = GraphModule(graph, seed=2)
    perturb(compiled)
    export(graph, tmp_path / "net.py", weights=compiled.state_dict())
    module = import_source(tmp_path / "net.py")
    model = module.create_model(pretrained=True).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), compiled.eval()(x), atol=1e-6, rtol=0)
    fine_tune = module.create_model(pretrained=True, num_classes=3)  # a fresh classifier, the rest trained
    assert fine_tune.get_classifier().out_features == 3
    torch.testing.assert_close(fine_tune.layer4[1].conv2[0].weight, model.layer4[1].conv2[0].weight)
    with pytest.raises(RuntimeError, match="size mismatch"):
        module.create_model(pretrained=True, in_chans=1)


def test_create_model_refuses_weights_of_another_architecture(tmp_path: Path) -> None:
    graph, other = _small_resnet(), reference("resnet18_cifar")  # 8x8 and 32x32 inputs: the same tensor shapes
    assert graph.canonical_hash() != other.canonical_hash()
    export(graph, tmp_path / "net.py", weights=GraphModule(graph).state_dict())
    export(other, tmp_path / "other" / "net.py", weights=GraphModule(other).state_dict())
    shutil.copy(tmp_path / "other" / "net.safetensors", tmp_path / "net.safetensors")
    module = import_source(tmp_path / "net.py")
    with pytest.raises(ValueError, match=r"net\.safetensors holds weights of architecture [0-9a-f]{64}, not of this"):
        module.create_model(pretrained=True)
    (tmp_path / "net.safetensors").unlink()
    with pytest.raises(FileNotFoundError):
        module.create_model(pretrained=True)


def test_without_weights_pretrained_is_refused() -> None:
    module = module_of(_small_resnet())
    assert module.PRETRAINED_CFG["file"] is None
    with pytest.raises(FileNotFoundError, match="exported without trained weights"):
        module.create_model(pretrained=True)
