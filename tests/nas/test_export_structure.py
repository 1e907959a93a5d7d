"""Structure the exporter finds (nas.export.structure, nas.export.cells): stages built in loops from tables,
cells as one class with their genotype as data, groups of inline modules, and the weight keys that follow."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_export_codegen import MACRO_SPACE, _small_resnet, check_equivalent, classes, reference, ruff_errors

from nas.export import generate_model_source
from nas.export.structure import Structure, common_name
from search_spaces import blocks
from search_spaces.ir import ArchGraph
from search_spaces.spaces.binary import BinarySpace
from search_spaces.spaces.darts import DARTS_V2, DartsSpace
from search_spaces.spaces.macro import MacroArch, MacroSpace, StageChoice
from search_spaces.spaces.nb201 import NB201Space, parse_arch_string

NB201_6111 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
NB201_ALL_OPS = "|none~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|skip_connect~2|"


def source_and_keys(graph: ArchGraph) -> tuple[str, dict[str, str]]:
    generated, _, _ = check_equivalent(graph)  # outputs equal the compiled graph's, weights load strictly
    assert not ruff_errors(generated.source)
    return generated.source, generated.key_map


# ----------------------------------------------------------------------------- stages
def test_repeated_blocks_become_stages_built_from_a_table_of_what_differs() -> None:
    source, keys = source_and_keys(_small_resnet())
    assert "self.layer1 = nn.Sequential(*[ResidualBlock(in_ch=64, planes=64) for _ in range(2)])" in source
    assert "ResidualBlock(in_ch=in_ch, planes=128, stride=stride)" in source  # constants in the call
    assert "for in_ch, stride in ((64, 2), (128, 1))" in source  # the per-block table
    assert "layer1_0" not in source and "layer2_1" not in source
    assert keys["nodes.layer2_1_conv1.0.weight"] == "layer2.1.conv1.0.weight"
    assert keys["nodes.layer2_0_downsample.1.running_mean"] == "layer2.0.downsample.1.running_mean"


def test_identical_inline_blocks_loop_over_a_count() -> None:
    space = MacroSpace(input_shape=(1, 8, 8), num_classes=10, widths=(16, 32), depths=(3,), kernels=(5,))
    arch = MacroArch((StageChoice("attention", 16, 3, 5, True), StageChoice("conv", 16, 3, 5, True),
                      StageChoice("residual", 32, 3, 5, True)))
    source, keys = source_and_keys(space.to_graph(arch))
    assert "self.stage1 = nn.Sequential(*[conv_bn(16, 16, 5) for _ in range(3)])" in source
    assert 'AttentionBlock(dim=16, heads=2, tokens=False, pos="learned", length=64)' in source
    assert "for _ in range(3)" in source and "for in_ch in (16, 32, 32)" in source
    assert source.count("AttentionBlock(dim=") == 1 and source.count("ResidualBlock(in_ch=") == 1
    assert keys["nodes.stage1_2_conv.1.running_var"] == "stage1.2.1.running_var"


def test_a_stage_ends_where_another_block_reads_inside_it() -> None:
    """A block output read from outside the run cannot be hidden in a loop: the run stops there."""
    g = ArchGraph("tapped stage")
    x = g.add("in", "input", shape=[8, 6, 6])
    outs = []
    for i in range(3):
        x = blocks.highway_block(g, x, f"stage.{i}", 8)
        outs.append(x)
    blocks.classifier_head(g, g.add("tap", "identity", [outs[0], outs[2]], merge="sum"), 5)
    source, _ = source_and_keys(g)
    assert "self.stage_0 = HighwayBlock(channels=8)" in source
    assert "self.stage = nn.Sequential(*[HighwayBlock(channels=8) for _ in range(2)])" in source
    assert "stage_0 = self.stage_0(x)\n        stage = self.stage(stage_0)\n        return stage_0 + stage" in source


def test_groups_of_one_blocks_inline_modules_are_one_flat_sequential() -> None:
    source, keys = source_and_keys(reference("vgg16"))
    assert "self.features0 = nn.Sequential(\n            nn.Conv2d(in_chans, 4, kernel_size=3, padding=1),\n" \
           "            nn.ReLU(),\n            nn.Conv2d(4, 4, kernel_size=3, padding=1)," in source
    assert keys["nodes.features0_conv1.0.weight"] == "features0.2.weight"  # spliced: conv, relu, conv, ...
    assert keys["nodes.head_fc1.weight"] == "head.5.weight"
    source, keys = source_and_keys(reference("densenet121"))  # conv_bn would serve its stem conv alone
    assert "def conv_bn(" not in source and "self.stem = nn.Sequential(\n            nn.Conv2d(in_chans, 8," in source
    assert keys["nodes.stem_conv.1.running_var"] == "stem.1.running_var"


def test_common_names() -> None:
    assert common_name(["layer1.0", "layer1.1"], "x") == "layer1"
    assert common_name(["inception4a", "inception4e"], "x") == "inception4"
    assert common_name(["cell0", "cell1", "cell12"], "x", plural=True) == "cells"
    assert common_name(["cell0", "cell1"], "x") == "cell"
    assert common_name(["conv1", "maxpool1"], "stem") == "stem"
    assert common_name(["lastact.bn", "lastact.relu"], "head") == "lastact"


# ----------------------------------------------------------------------------- cells
@pytest.mark.parametrize("arch", [NB201_6111, NB201_ALL_OPS])
def test_nb201_is_one_cell_class_with_its_genotype_and_the_skeleton(arch: str) -> None:
    source, keys = source_and_keys(NB201Space(C=4, N=2, num_classes=5).to_graph(parse_arch_string(arch)))
    assert classes(source) == {"Cell", "ResNetBasicBlock", "Net"} | ({"Zero"} if "none" in arch else set())
    assert "GENOTYPE = ((1, 0, " in source
    assert "self.stage1 = nn.Sequential(*[Cell(channels=4, genotype=GENOTYPE) for _ in range(2)])" in source
    assert "self.reduce1 = ResNetBasicBlock(in_ch=4, out=8)" in source
    ops = source[source.index("OPS = {"):source.index("class Cell")]
    assert ("avg_pool_3x3" in ops) == ("avg_pool_3x3" in arch) and ("none" in ops) == ("none" in arch)
    assert keys["nodes.stage2_cell1_edge3__1.1.weight"] == "stage2.1.edges.4.1.weight"  # edge (3, 1) is 5th
    assert keys["nodes.reduce1_downsample_conv.weight"] == "reduce1.downsample.1.weight"


def test_darts_cells_are_one_class_in_a_loop_over_both_previous_outputs() -> None:
    source, keys = source_and_keys(DartsSpace(C=4, layers=5, num_classes=5, input_shape=(3, 16, 16)).to_graph(DARTS_V2))
    assert classes(source) == {"Cell", "FactorizedReduce", "Net"}
    assert 'NORMAL = (("sep_conv_3x3", 0), ("sep_conv_3x3", 1),' in source and "REDUCE = (" in source
    assert "self.cells = nn.ModuleList([" in source and "(REDUCE, 12, 16, 8, True, False)" in source
    assert "s0 = s1 = x\n        for cell in self.cells:\n            s0, s1 = s1, cell(s0, s1)" in source
    assert "concat=" not in source[source.index("class Net("):]  # the default (2, 3, 4, 5)
    assert keys["nodes.cell1_preprocess0.1.weight"] == "cells.1.preprocess0.1.weight"
    assert keys["nodes.cell2_node3_1_sep_conv_3x3.2.weight"] == "cells.2.ops.3.2.weight"


@pytest.mark.parametrize("bits", [
    (1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1),  # every node type
    (0, 0) * 5 + (1,) * 21,  # identity nodes only
    "random",
])
def test_binary_cells_are_one_class_with_their_genotype(bits: Any) -> None:
    space = BinarySpace(channels=4, stages=2, num_classes=5, input_shape=(1, 8, 8))
    if bits == "random":
        bits = space.sample(np.random.default_rng(5))
    source, _ = source_and_keys(space.to_graph(bits))
    assert "class Cell(" in source and "GENOTYPE = (" in source
    assert "self.stage1_cell = Cell(channels=8, genotype=GENOTYPE)" in source


def test_the_empty_binary_cell_stays_inline() -> None:
    space = BinarySpace(channels=4, stages=1, num_classes=5, input_shape=(1, 8, 8))
    source, _ = source_and_keys(space.to_graph((0,) * 31))  # no path from input to output: a zero map
    assert "class Cell(" not in source and "self.stage0_cell_out = Zero(stride=1)" in source


def test_a_cell_whose_nodes_differ_from_its_spaces_stays_inline() -> None:
    graph = NB201Space(C=4, N=2, num_classes=5).to_graph(parse_arch_string(NB201_6111))
    graph.graph.nodes["stage1.cell1.edge2<-1"]["params"].update(bn_eps=1e-3)
    source, _ = source_and_keys(graph)
    assert "self.stage1_cell0 = Cell(channels=4, genotype=GENOTYPE)" in source
    assert "self.stage1_cell1_edge2__1 = nn.Sequential(" in source and "nn.BatchNorm2d(4, eps=0.001)" in source
    assert "self.stage1_cell1_edge3__2 = relu_conv_bn(4, 4, 1)" in source
    assert "self.stage2 = nn.Sequential(*[Cell(channels=8, genotype=GENOTYPE) for _ in range(2)])" in source


def test_structure_is_deterministic() -> None:
    graph = DartsSpace(C=4, layers=5, input_shape=(3, 16, 16)).to_graph(DARTS_V2)
    first = generate_model_source(graph)
    again = generate_model_source(ArchGraph.from_json(graph.to_json()))
    assert again.source == first.source and list(again.key_map.items()) == list(first.key_map.items())
    structure = Structure(graph)
    assert [b.tag for b in structure.blocks] == [b.tag for b in Structure(graph).blocks]


def test_macro_members_export_exactly() -> None:
    for seed in range(4):
        source_and_keys(MACRO_SPACE.to_graph(MACRO_SPACE.sample(np.random.default_rng(100 + seed))))
