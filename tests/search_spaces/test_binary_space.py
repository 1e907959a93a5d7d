"""BinarySpace (COMBO's 31-bit NAS space): every bit vector is a network that compiles and trains;
pruning of nodes off every input-output path; the disconnected cell; exact sizes; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from search_spaces.analysis import measure
from search_spaces.compiler import GraphModule
from search_spaces.spaces import make_space
from search_spaces.spaces.binary import EDGES, BinarySpace, cell_structure

CIFAR = BinarySpace()
DIGITS = BinarySpace(input_shape=(1, 8, 8), num_classes=10)


def member(types: dict[int, tuple[int, int]], edges: list[tuple[int, int]]) -> tuple[int, ...]:
    """Bits for node types ``{k: (t, s)}`` (default identity) and the given edges."""
    node_bits = [b for k in range(1, 6) for b in types.get(k, (0, 0))]
    return tuple(node_bits + [int(e in edges) for e in EDGES])


bit_vectors = st.tuples(*[st.integers(0, 1)] * 31)


def test_variables_size_and_registry() -> None:
    assert len(CIFAR.variables) == 31 and CIFAR.size == 2**31
    assert all(v.cardinality == 2 for v in CIFAR.variables)
    assert [v.name for v in CIFAR.variables[:2]] == ["node1.t", "node1.s"]
    assert CIFAR.variables[10].name == "edge0->1" and CIFAR.variables[-1].name == "edge5->6"
    assert isinstance(make_space("binary"), BinarySpace)


@settings(max_examples=25, deadline=None)
@given(bit_vectors)
def test_every_vector_compiles_and_trains(bits: tuple[int, ...]) -> None:
    arch = DIGITS.decode(np.array(bits))
    assert arch == bits and tuple(DIGITS.encode(arch)) == bits
    assert DIGITS.from_json(json.loads(json.dumps(DIGITS.to_json(arch)))) == arch
    model = GraphModule(DIGITS.to_graph(arch), seed=0).train()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, torch.arange(4)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@settings(max_examples=15, deadline=None)
@given(bit_vectors)
def test_cifar_network_shapes(bits: tuple[int, ...]) -> None:
    graph = CIFAR.to_graph(bits)
    assert graph.validate()[graph.output].dims == (10,)


def test_exact_parameter_count_of_a_one_conv_cell() -> None:
    """0 -> node1 (conv 3x3) -> 6 on CIFAR: stem 464, cells 2352 / 9312 / 37056, expands 576 / 2176,
    linear 64*4*4 -> 10 = 10250."""
    arch = member({1: (1, 0)}, [(0, 1), (1, 6)])
    assert measure(CIFAR.to_graph(arch)).params == 464 + 2352 + 576 + 9312 + 2176 + 37056 + 10250


def test_nodes_off_every_path_are_pruned() -> None:
    """Node 2 reads the input but feeds nothing; node 3 feeds the output but reads nothing: both go,
    so their types do not change the network (same canonical hash)."""
    edges = [(0, 1), (1, 6), (0, 2), (3, 6)]
    types, kept = cell_structure(member({1: (1, 1)}, edges))
    assert types == {1: "conv_5x5"} and kept == [(0, 1), (1, 6)]
    a = CIFAR.to_graph(member({1: (1, 1), 2: (1, 0), 3: (0, 1)}, edges))
    b = CIFAR.to_graph(member({1: (1, 1)}, [(0, 1), (1, 6)]))
    assert a.canonical_hash() == b.canonical_hash()
    c = CIFAR.to_graph(member({1: (1, 0)}, [(0, 1), (1, 6)]))
    assert c.canonical_hash() != b.canonical_hash()


def test_sum_merge_and_direct_skip() -> None:
    arch = member({1: (1, 0), 2: (0, 1)}, [(0, 1), (0, 2), (1, 2), (2, 6), (0, 6)])
    types, kept = cell_structure(arch)
    assert types == {1: "conv_3x3", 2: "max_pool_3x3"} and (0, 6) in kept
    g = CIFAR.to_graph(arch)
    assert g.attrs("stage0.cell.node2.in")["merge"] == "sum" and g.attrs("stage0.cell.node6")["merge"] == "sum"


def test_a_disconnected_cell_outputs_zeros() -> None:
    arch = member({1: (1, 0)}, [(0, 1), (2, 6)])  # no input -> output path
    assert cell_structure(arch) == ({}, [])
    model = GraphModule(DIGITS.to_graph(arch), seed=0).eval()
    with torch.no_grad():
        out = model(torch.randn(6, 1, 8, 8))
    assert torch.allclose(out, out[:1].expand_as(out))  # the same (chance) prediction for every input


def test_rejects_bad_members_and_config() -> None:
    for bad in ((0, 1), (2,) * 31, "0" * 31, None):
        with pytest.raises(ValueError, match="binary-space member"):
            CIFAR.encode(bad)
    with pytest.raises(ValueError, match="BinarySpace needs"):
        BinarySpace(channels=0)
    with pytest.raises(ValueError, match=r"variable 'node1\.t' must be in 0\.\.1"):
        CIFAR.decode([2] + [0] * 30)
