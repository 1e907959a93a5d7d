"""Reference architectures built through the IR: exact published sizes, trainability, registry, hashing."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from search_spaces.analysis import count_params, measure
from search_spaces.compiler import GraphModule
from search_spaces.ir import ArchGraph
from search_spaces.reference import create_model, list_models

# Published parameter counts at 224x224x3 / 1000 classes (torchvision for VGG, GoogLeNet, ResNet,
# ResNeXt, DenseNet; timm for resnetv2_50 and vit_tiny_patch16_224); CIFAR ResNet-18 at 32x32 / 10.
PUBLISHED_PARAMS = {
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnext50_32x4d": 25_028_904,
    "preact_resnet50": 25_549_352,
    "densenet121": 7_978_856,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "vit_tiny_patch16_224": 5_717_416,
    "resnet18_cifar": 11_173_962,
}

# torchvision's published GFLOPS (multiply-adds, 2 decimals) at 224x224: unlike parameter counts,
# these also pin strides, paddings and ceil-mode pooling (e.g. the stride on conv2, not conv1).
PUBLISHED_GMACS = {
    "vgg16": 15.47,
    "googlenet": 1.50,
    "resnet18": 1.81,
    "resnet34": 3.66,
    "resnet50": 4.09,
    "resnext50_32x4d": 4.23,
    "densenet121": 2.83,
}

ALL_MODELS = sorted([*PUBLISHED_PARAMS, "highwaynet"])

# small, fast configurations for forward/backward on CPU (batch 2)
_VGG_SMALL = {"img_size": 64, "width_mult": 0.125, "hidden": 64, "pool_size": 2}
SMALL: dict[str, dict[str, Any]] = {
    "vgg11": _VGG_SMALL,
    "vgg13": _VGG_SMALL,
    "vgg16": _VGG_SMALL,
    "vgg19": _VGG_SMALL,
    "googlenet": {"img_size": 64},
    "resnet18": {"img_size": 64},
    "resnet34": {"img_size": 64},
    "resnet50": {"img_size": 64},
    "resnext50_32x4d": {"img_size": 64},
    "preact_resnet50": {"img_size": 64},
    "densenet121": {"img_size": 32},
    "densenet169": {"img_size": 32},
    "densenet201": {"img_size": 32},
    "vit_tiny_patch16_224": {"img_size": 32},
    "highwaynet": {"img_size": 32, "stem_stride": 1},
    "resnet18_cifar": {"img_size": 32},
}


def test_list_models() -> None:
    assert list_models() == ALL_MODELS
    assert set(SMALL) == set(ALL_MODELS)


def test_unknown_model_names_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown reference model 'resnet17'") as info:
        create_model("resnet17")
    for name in ("resnet18", "vgg16", "vit_tiny_patch16_224", "highwaynet"):
        assert name in str(info.value)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_published_parameter_count(name: str) -> None:
    assert count_params(create_model(name)) == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_published_macs(name: str) -> None:
    assert round(measure(create_model(name)).macs / 1e9, 2) == PUBLISHED_GMACS[name]


def _highway_closed_form(in_chans: int, widths: list[int], depths: list[int], num_classes: int) -> int:
    """Parameters of highwaynet, derived by hand from its definition (no call into the IR)."""
    total = 9 * in_chans * widths[0] + 2 * widths[0]  # stem: 3x3 conv (no bias) + BN (weight, bias)
    for i, (w, d) in enumerate(zip(widths, depths, strict=True)):
        if i > 0 and w != widths[i - 1]:
            total += widths[i - 1] * w + 2 * w  # 1x1 width change (no bias) + BN
        # per highway layer: H = 3x3 conv (no bias) + BN; gate T = 3x3 conv with bias
        total += d * ((9 * w * w + 2 * w) + (9 * w * w + w))
    return total + widths[-1] * num_classes + num_classes  # linear head


@pytest.mark.parametrize(("kwargs", "in_chans", "widths", "depths", "classes"), [
    ({}, 3, [32, 64, 128, 256], [3, 3, 3, 3], 1000),
    ({"in_chans": 1, "widths": (16, 16, 48), "depths": (1, 2, 1), "num_classes": 7, "img_size": 32},
     1, [16, 16, 48], [1, 2, 1], 7),
])
def test_highwaynet_closed_form(kwargs: dict[str, Any], in_chans: int, widths: list[int], depths: list[int],
                                classes: int) -> None:
    # No published count exists for this network: compare with the closed form written out above.
    expected = _highway_closed_form(in_chans, widths, depths, classes)
    assert count_params(create_model("highwaynet", **kwargs)) == expected
    if not kwargs:
        assert expected == 5_006_312


@pytest.mark.parametrize("name", ALL_MODELS)
def test_graph_metadata(name: str) -> None:
    g = create_model(name)
    assert g.name == name
    for node in g.graph.nodes:
        block = g.attrs(node)["block"]
        assert isinstance(block, str) and block.count(":") == 1 and all(block.split(":")), (node, block)
    shapes = g.validate()
    assert shapes[g.output].dims == (10 if name == "resnet18_cifar" else 1000,)
    assert ArchGraph.from_json(g.to_json()) == g


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward(name: str) -> None:
    kwargs = SMALL[name]
    g = create_model(name, num_classes=5, **kwargs)
    torch.manual_seed(0)
    model = GraphModule(g, seed=0)
    x = torch.randn(2, 3, kwargs["img_size"], kwargs["img_size"])
    out = model(x)
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0


def test_kwargs_reach_the_graph() -> None:
    g = create_model("resnet18", num_classes=7, in_chans=1, img_size=96)
    shapes = g.validate()
    assert shapes[g.input].dims == (1, 96, 96)
    assert shapes[g.output].dims == (7,)
    assert shapes[g.features_node()].dims == (512, 3, 3)


def test_vit_rejects_partial_patches() -> None:
    with pytest.raises(ValueError, match="multiple of patch_size"):
        create_model("vit_tiny_patch16_224", img_size=40)


def test_canonical_hash_distinct_and_stable() -> None:
    r18, r34 = create_model("resnet18"), create_model("resnet34")
    h18 = r18.canonical_hash()
    assert h18 != r34.canonical_hash()
    assert create_model("resnet18").canonical_hash() == h18
    again = ArchGraph.from_json(r18.to_json())
    assert again == r18
    assert again.canonical_hash() == h18
    assert len(h18) == 64 and int(h18, 16) >= 0
    # the class count is part of the architecture
    assert create_model("resnet18", num_classes=10).canonical_hash() != h18


def test_resnet18_cifar_stride_layout() -> None:
    # (3, 32, 32): no stem downsampling, then strides 1, 2, 2, 2 -> (512, 4, 4) before pooling
    g = create_model("resnet18_cifar")
    shapes = g.validate()
    assert shapes[g.features_node()].dims == (512, 4, 4)
    # conv/linear multiply-adds by hand: C_in * C_out * k^2 * H_out * W_out per conv
    macs = 3 * 64 * 9 * 32 * 32 + 4 * 64 * 64 * 9 * 32 * 32  # stem, layer1
    for c_in, c, side in ((64, 128, 16), (128, 256, 8), (256, 512, 4)):  # layer2..4
        macs += (c_in * c * 9 + 3 * c * c * 9 + c_in * c) * side * side  # 3x3 convs + 1x1 projection
    macs += 512 * 10
    assert macs == 555_422_720  # the commonly quoted 0.56 G MACs
    assert measure(g).macs == macs
