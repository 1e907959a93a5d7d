"""DARTS: search networks, architecture gradients (first / second order, finite-difference HVP),
the Hessian eigenvalue, genotype derivation, a planted solution, determinism, remedies, memory check."""

from __future__ import annotations

import itertools
from collections.abc import Hashable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from nas.darts import DartsConfig, EdgeAdapter, adapter_for, build_supernet, darts_search
from nas.darts.adapters import DartsAdapter, NB201Adapter, derive_cell
from nas.darts.architect import (
    dominant_hessian_eigenvalue,
    finite_difference_hvp,
    first_order_grad,
    second_order_grad,
)
from nas.darts.cells import NB201SearchNetwork
from nas.darts.memory import MARGIN, check_memory, estimate_memory
from nas.darts.search import _early_stop, split_indices
from nas.darts.supernet import DartsSearchNetwork, MixedOp, SearchNetwork, nb201_op
from search_spaces.ir import ArchGraph
from search_spaces.spaces.base import SearchSpace, Variable
from search_spaces.spaces.darts import DARTS_V2, PRIMITIVES, DartsSpace, Genotype
from search_spaces.spaces.macro import MacroSpace
from search_spaces.spaces.nb201 import NB201_OPS, NB201Space


def batch(n: int, shape: tuple[int, ...] = (3, 8, 8), classes: int = 10, seed: int = 0,
          dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=dtype), torch.randint(0, classes, (n,), generator=g)


def tiny_darts(seed: int = 0, dtype: torch.dtype = torch.float64) -> DartsSearchNetwork:
    """2 cells (both reductions), C=4: every alpha of the reduce cell is used."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DartsSearchNetwork(PRIMITIVES, C=4, layers=3, num_classes=10, seed=seed).to(dtype).train()


# ------------------------------------------------------------------------------------ networks
def test_search_network_matches_the_reference_sizes() -> None:
    """quark0/darts Network(16, 10, 8): 1,930,618 weights (1.93 MB) + 2 x 14 x 8 alphas; reductions at 2 and 5."""
    net = DartsSearchNetwork(PRIMITIVES)
    assert sum(p.numel() for p in net.weight_parameters()) == 1_930_618
    assert {k: tuple(v.shape) for k, v in net.alphas.items()} == {"normal": (14, 8), "reduce": (14, 8)}
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [2, 5]
    assert float(net.alphas["normal"].detach().abs().max()) < 1e-2  # 1e-3 * randn
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    nb = NB201SearchNetwork(NB201_OPS, C=4, N=1)
    assert tuple(nb.alphas["cell"].shape) == (6, 5) and nb(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_mixed_op_is_the_weighted_sum_plus_the_auxiliary_skip() -> None:
    ops = ("none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3")
    mixed = MixedOp(ops, 4, 1, nb201_op, aux_skip=True)
    x = torch.randn(2, 4, 6, 6)
    w = torch.softmax(torch.randn(4), 0)
    expected = sum(wi * op(x) for wi, op in zip(w, mixed.ops, strict=True))
    assert torch.allclose(mixed(x, w), expected)
    assert torch.allclose(mixed(x, w, aux_beta=0.3), expected + 0.3 * x)


def test_weights_and_alphas_are_kept_apart_and_seeded() -> None:
    a, b = (build_supernet(DartsAdapter(DartsSpace()), DartsConfig(init_channels=4, layers=2, seed=5), (3, 8, 8), 10)
            for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    weight_ids = {id(p) for p in a.weight_parameters()}
    assert not weight_ids & {id(p) for p in a.arch_parameters()}
    assert len(weight_ids) + 2 == len(list(a.parameters()))


# ------------------------------------------------------------------------------------ architect
def _loss(net: SearchNetwork, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(functional_call(net, params, (x,)), y)


def test_first_order_gradient_is_the_validation_gradient() -> None:
    net = tiny_darts()
    x, y = batch(4, dtype=torch.float64)
    _, grads = first_order_grad(net, x, y)
    expected = torch.autograd.grad(F.cross_entropy(net(x), y), net.arch_parameters())
    assert all(torch.allclose(g, e) for g, e in zip(grads, expected, strict=True))


class SmoothNet(SearchNetwork):
    """A smooth two-edge supernet (no ReLU, no max pool): finite differences are accurate on it, so
    it checks the second-order machinery itself. (On ReLU networks the gradient in α jumps where
    units switch, and the reference's finite difference with R = 0.01/‖v‖ crosses such jumps.)"""

    OPS = ("conv", "tanh_conv", "avg_pool", "skip")

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.edges = nn.ModuleList(MixedOp(self.OPS, 4, 1, self.op) for _ in range(2))
        self.classifier = nn.Linear(4, 10)
        self._init_alphas({"cell": (2, len(self.OPS))}, torch.Generator().manual_seed(0))
        with torch.no_grad():
            self.alphas["cell"].normal_(0, 0.5, generator=torch.Generator().manual_seed(1))

    @staticmethod
    def op(name: str, c: int, stride: int) -> nn.Module:
        return {"conv": lambda: nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)),
                "tanh_conv": lambda: nn.Sequential(nn.Tanh(), nn.Conv2d(c, c, 1)),
                "avg_pool": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                "skip": nn.Identity}[name]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.arch_weights()["cell"]
        h = self.stem(x)
        for k, edge in enumerate(self.edges):
            h = edge(h, w[k])
        return self.classifier(torch.tanh(h).mean((2, 3)))


def smooth_net() -> SmoothNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SmoothNet().double().train()


def exact_unrolled_gradient(net: SearchNetwork, x_t: torch.Tensor, y_t: torch.Tensor, x_v: torch.Tensor,
                            y_v: torch.Tensor, lr: float, mu: float, wd: float,
                            momentum: list[torch.Tensor]) -> list[torch.Tensor]:
    """∇_α L_val(w - ξ(μm + ∇_w L_train(w, α) + λw), α) by double backward (arch_parameters() order)."""
    names = dict(net.named_parameters())
    alpha_ids = {id(a) for a in net.arch_parameters()}
    weight_names = [n for n, p in names.items() if id(p) not in alpha_ids]
    alpha_names = [n for n, p in names.items() if id(p) in alpha_ids]
    weights = {n: names[n].detach().clone().requires_grad_(True) for n in weight_names}
    alphas = {n: names[n].detach().clone().requires_grad_(True) for n in alpha_names}
    train_loss = _loss(net, {**weights, **alphas}, x_t, y_t)
    g_w = torch.autograd.grad(train_loss, list(weights.values()), create_graph=True)
    unrolled = {n: w - lr * (mu * m + g + wd * w) for (n, w), g, m in zip(weights.items(), g_w, momentum, strict=True)}
    val_loss = _loss(net, {**unrolled, **alphas}, x_v, y_v)
    return list(torch.autograd.grad(val_loss, list(alphas.values())))


def test_second_order_gradient_matches_the_exact_unrolled_gradient() -> None:
    """The finite-difference implementation against the exact unrolled gradient (double backward),
    with momentum and weight decay in the virtual step; the weights are left exactly as they were."""
    net = smooth_net()
    x_t, y_t = batch(8, seed=1, dtype=torch.float64)
    x_v, y_v = batch(8, seed=2, dtype=torch.float64)
    lr, mu, wd = 0.5, 0.9, 3e-4  # a large ξ makes the Hessian term matter
    momentum = [0.1 * torch.randn_like(w) for w in net.weight_parameters()]
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    _, grads = second_order_grad(net, x_t, y_t, x_v, y_v, lr, mu, wd, momentum)
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())
    exact = exact_unrolled_gradient(net, x_t, y_t, x_v, y_v, lr, mu, wd, momentum)
    _, first = first_order_grad(net, x_v, y_v)
    for got, want, naive in zip(grads, exact, first, strict=True):
        assert float((got - want).norm() / want.norm()) < 1e-3
        assert float((naive - want).norm() / want.norm()) > 1e-2  # the unrolling changes the gradient


def test_second_order_on_the_darts_network_tends_to_first_order_as_the_step_vanishes() -> None:
    """On the real (ReLU) search network: with ξ -> 0 the unrolled gradient is the first-order one,
    and the weights are restored exactly."""
    net = tiny_darts()
    x_t, y_t = batch(4, seed=1, dtype=torch.float64)
    x_v, y_v = batch(4, seed=2, dtype=torch.float64)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    buffers = [None] * len(list(net.weight_parameters()))
    _, grads = second_order_grad(net, x_t, y_t, x_v, y_v, 1e-9, 0.9, 3e-4, buffers)
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())
    _, first = first_order_grad(net, x_v, y_v)
    for got, want in zip(grads, first, strict=True):
        assert float((got - want).norm() / want.norm()) < 1e-5


def test_finite_difference_hvp_matches_double_backward() -> None:
    net = smooth_net()
    x, y = batch(8, seed=4, dtype=torch.float64)
    weights = list(net.weight_parameters())
    generator = torch.Generator().manual_seed(0)  # not the global RNG: the result must not depend on test order
    v = [torch.randn(w.shape, generator=generator, dtype=w.dtype) for w in weights]
    fd = finite_difference_hvp(net, weights, v, x, y)
    loss = F.cross_entropy(net(x), y)
    g_w = torch.autograd.grad(loss, weights, create_graph=True)
    exact = torch.autograd.grad(g_w, net.arch_parameters(), grad_outputs=v)
    for got, want in zip(fd, exact, strict=True):  # the finite difference's O(R^2) error: up to 8e-5 over 30 v's
        assert float((got - want).norm() / want.norm()) < 2e-4


def test_dominant_hessian_eigenvalue_matches_the_full_hessian() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = NB201SearchNetwork(NB201_OPS, C=4, N=1, seed=0).double()
    x, y = batch(6, seed=5, dtype=torch.float64)
    alpha = net.alphas["cell"]
    net.eval()

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(net, {"alphas.cell": flat.view_as(alpha)}, (x,)), y)

    hessian = torch.autograd.functional.hessian(loss_of, alpha.detach().flatten())
    eig = torch.linalg.eigvalsh(hessian)
    dominant = float(eig[eig.abs().argmax()])
    got = dominant_hessian_eigenvalue(net.train(), x, y, iterations=200, generator=torch.Generator().manual_seed(0))
    assert got == pytest.approx(dominant, rel=1e-3)


# ------------------------------------------------------------------------------------ derivation
def test_genotype_derivation_on_hand_set_alphas() -> None:
    """Weights built to encode DARTS_V2, with 'none' the largest entry of every unchosen edge: the
    derivation keeps the 2 strongest non-'none' edges per node and their strongest non-'none' op."""
    rng = np.random.default_rng(0)

    def weights_for(cell: tuple[tuple[str, int], ...]) -> np.ndarray:
        w = rng.uniform(0.0, 0.05, size=(14, 8))
        w[:, PRIMITIVES.index("none")] = 0.9
        start = 0
        for node in range(4):
            for rank, (op, src) in enumerate(cell[2 * node: 2 * node + 2]):
                w[start + src, PRIMITIVES.index(op)] = 0.6 - 0.1 * rank
            start += node + 2
        return w / w.sum(1, keepdims=True)

    derived = DartsAdapter(DartsSpace()).derive({"normal": weights_for(DARTS_V2.normal),
                                                 "reduce": weights_for(DARTS_V2.reduce)})
    assert derived == DARTS_V2
    assert DartsAdapter(DartsSpace()).skip_connects(derived) == 2


def test_derive_cell_ties_take_the_first_edge_and_op() -> None:
    w = np.full((14, 8), 1 / 8)
    gene = derive_cell(w, PRIMITIVES)
    assert gene[:2] == [("max_pool_3x3", 0), ("max_pool_3x3", 1)]
    assert [src for _, src in gene] == [0, 1, 0, 1, 0, 1, 0, 1]


def test_nb201_derivation_is_the_argmax_per_edge_none_included() -> None:
    w = np.zeros((6, 5))
    for k, op in enumerate(("none", "skip_connect", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect")):
        w[k, NB201_OPS.index(op)] = 1.0
    adapter = NB201Adapter(NB201Space())
    arch = adapter.derive({"cell": w})
    assert arch == ("none", "skip_connect", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect")
    assert adapter.skip_connects(arch) == 2 and NB201Space().encode(arch) is not None


def test_spaces_that_are_not_per_edge_are_refused() -> None:
    with pytest.raises(ValueError, match="one op per cell edge"):
        adapter_for(MacroSpace())


# ------------------------------------------------------------------------------------ planted solution
class OneEdgeNet(SearchNetwork):
    """1x1 stem (no spatial features) -> one mixed edge -> ReLU -> global mean -> linear."""

    def __init__(self, ops: tuple[str, ...], in_channels: int, num_classes: int, seed: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 1, bias=False)
        self.edge = MixedOp(ops, 8, 1, nb201_op)
        self.classifier = nn.Linear(8, num_classes)
        self._init_alphas({"cell": (1, len(ops))}, torch.Generator().manual_seed(seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.edge(self.stem(x), self.arch_weights()["cell"][0], self.aux_skip_beta)
        return self.classifier(F.relu(h).mean((2, 3)))


class OneEdgeAdapter(EdgeAdapter):
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

    def edge_labels(self) -> dict[str, list[str]]:
        return {"cell": ["edge1<-0"]}

    def network(self, config: DartsConfig, input_shape: tuple[int, ...], num_classes: int) -> SearchNetwork:
        return OneEdgeNet(self.ops, input_shape[0], num_classes, config.seed)

    def derive(self, weights: dict[str, np.ndarray]) -> Hashable:
        return (self.ops[1 + int(np.argmax(weights["cell"][0][1:]))],)

    def skip_connects(self, arch: Hashable) -> int:
        return int(arch == ("skip_connect",))


class OneEdgeSpace(SearchSpace):
    """A per-edge space of its own (one edge): DARTS searches it through ``darts_adapter``."""

    name = "one_edge"
    variables = (Variable("edge1<-0", OneEdgeAdapter.ops[1:]),)
    num_classes = 2

    def encode(self, arch: Hashable) -> np.ndarray:
        return np.array([self.variables[0].choices.index(arch[0])])  # type: ignore[index]

    def decode_indices(self, indices: tuple[int, ...]) -> Hashable:
        return (self.variables[0].choices[indices[0]],)

    def to_graph(self, arch: Hashable) -> ArchGraph:
        raise NotImplementedError

    def darts_adapter(self) -> EdgeAdapter:
        return OneEdgeAdapter(self)


def oriented_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise smoothed along rows (label 0) and the same images turned 90 degrees (label 1).

    The classes differ only in orientation: every op of the edge but the 3x3 conv (none, skip,
    1x1 conv, 3x3 average pool), followed by ReLU and a global mean, is invariant to the turn, so
    only the 3x3 conv can tell them apart."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, 8, 10, generator=g)
    rows = (noise[..., :-2] + noise[..., 1:-1] + noise[..., 2:]) / 3 ** 0.5  # (n, 1, 8, 8)
    x = torch.cat([rows, rows.transpose(2, 3)])
    y = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    perm = torch.randperm(2 * n, generator=g)
    return x[perm], y[perm]


@pytest.mark.parametrize("order", [1, 2])
def test_planted_solution_darts_selects_the_only_op_that_can_solve_the_task(order: int) -> None:
    x, y = oriented_data(256)
    config = DartsConfig(epochs=20, lr=0.1, batch_size=32, arch_lr=3e-3, augment="none", order=order, seed=0)
    result = darts_search(OneEdgeSpace(), config, x, y)
    assert result.arch == ("nor_conv_3x3",)
    final = np.asarray(result.history[-1]["alphas"]["cell"][0])
    assert int(np.argmax(final)) == OneEdgeAdapter.ops.index("nor_conv_3x3") and final.max() > 0.3
    assert result.history[-1]["train_acc"] > 0.95 and result.history[-1]["valid_acc"] > 0.95


# ------------------------------------------------------------------------------------ the search loop
def _tiny_search(seed: int, **options: object) -> object:
    x, y = batch(48, shape=(3, 8, 8), classes=4, seed=seed + 10)
    settings = {"epochs": 2, "batch_size": 12, "init_channels": 4, "layers": 3, "seed": seed, **options}
    config = DartsConfig(**settings)  # type: ignore[arg-type]
    return darts_search(DartsSpace(num_classes=4, input_shape=(3, 8, 8)), config, x, y)


def test_same_seed_same_search_and_a_member_of_the_space() -> None:
    a, b, c = _tiny_search(0), _tiny_search(0), _tiny_search(1)
    untimed = [[{k: v for k, v in r.items() if k != "epoch_seconds"} for r in s.history] for s in (a, b)]  # type: ignore[attr-defined]
    assert untimed[0] == untimed[1]
    assert a.history[-1]["alphas"] != c.history[-1]["alphas"]  # type: ignore[attr-defined]
    assert isinstance(a.arch, Genotype) and DartsSpace().decode(DartsSpace().encode(a.arch)) == a.arch  # type: ignore[attr-defined]
    record = a.history[-1]  # type: ignore[attr-defined]
    assert record["epoch"] == 2 and record["lr"] == pytest.approx(0.001)
    assert set(record["alphas"]) == {"normal", "reduce"} and len(record["alphas"]["normal"]) == 14


def test_second_order_search_runs_and_logs_the_hessian() -> None:
    result = _tiny_search(0, order=2, hessian_every=1, hessian_iterations=5)
    assert all("hessian_eigenvalue" in r for r in result.history)  # type: ignore[attr-defined]
    assert result.history[-1]["alphas"] != _tiny_search(0).history[-1]["alphas"]  # type: ignore[attr-defined]


def test_auxiliary_skip_decays_from_one_to_zero() -> None:
    config = DartsConfig(epochs=5, aux_skip=True)
    assert [config.aux_beta_at(e) for e in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert DartsConfig(epochs=5).aux_beta_at(0) == 0.0
    result = _tiny_search(0, aux_skip=True)
    assert [r["aux_skip_beta"] for r in result.history] == [1.0, 0.0]  # type: ignore[attr-defined]


def test_learning_rate_schedule_is_the_reference_cosine_stepped_first() -> None:
    config = DartsConfig(epochs=50)
    assert config.lr_at(0) == pytest.approx(0.001 + 0.5 * 0.024 * (1 + np.cos(np.pi / 50)))
    assert config.lr_at(0) < 0.025 and config.lr_at(49) == pytest.approx(0.001)


def test_early_stopping_rules() -> None:
    hessian = DartsConfig(early_stop="hessian", es_window=2)
    record = {"skip_connects": 0}
    assert _early_stop(hessian, record, [1.0, 1.0, 1.1]) is None  # not enough epochs
    assert _early_stop(hessian, record, [1.0, 1.0, 1.1, 1.2]) is None  # ratio 2/2.3 > 0.75
    back, reason = _early_stop(hessian, record, [1.0, 1.0, 1.5, 1.6])  # type: ignore[misc]
    assert back == 2 and "DARTS-ES" in reason
    skips = DartsConfig(early_stop="skips")
    assert _early_stop(skips, {"skip_connects": 1}, []) is None
    assert _early_stop(skips, {"skip_connects": 2}, [])[0] == 0  # type: ignore[index]


def test_hessian_early_stop_returns_an_earlier_architecture() -> None:
    """With a threshold of 1 any rise of the eigenvalue stops the search: the architecture returned
    is the one derived es_window epochs before the stop."""
    result = _tiny_search(0, epochs=6, early_stop="hessian", es_window=1, es_threshold=1.0, hessian_iterations=5)
    eig = [r["hessian_eigenvalue"] for r in result.history]  # type: ignore[attr-defined]
    assert eig[-1] > eig[-2] > 0 and all(not b > a > 0 for a, b in itertools.pairwise(eig[:-1])), eig
    assert result.stopped_early and result.epoch == len(result.history) - 1  # type: ignore[attr-defined]
    assert result.arch == DartsSpace().from_json(result.history[result.epoch - 1]["arch"])  # type: ignore[attr-defined]


def test_non_finite_losses_fail_the_search_with_a_reason() -> None:
    from nas.trainer import TrialFailed

    x, y = batch(24, classes=4)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrialFailed, match="non-finite"):
        darts_search(DartsSpace(num_classes=4, input_shape=(3, 8, 8)),
                     DartsConfig(epochs=1, batch_size=24, init_channels=4, layers=2, train_portion=0.5,
                                 augment="none"), x, y)


def test_config_validation() -> None:
    for bad in ({"order": 3}, {"epochs": 0}, {"train_portion": 1.0}, {"early_stop": "soon"}, {"augment": "x"},
                {"init_channels": 5}, {"lr": -1.0}, {"aux_skip": 1}):
        with pytest.raises(ValueError, match="darts:"):
            DartsConfig.from_dict(bad)
    with pytest.raises(ValueError, match="unknown option"):
        DartsConfig.from_dict({"population_size": 3})
    assert DartsConfig.from_dict(DartsConfig(order=2).to_dict()) == DartsConfig(order=2)
    for bad in ({"num_workers": 0}, {"num_workers": 1.5}, {"num_workers": 4, "batch_size": 3}):
        with pytest.raises(ValueError, match=r"darts: .*num_workers"):
            DartsConfig.from_dict(bad)
    # num_workers is stored only when it is not 1: configurations stored before it existed stay the same
    assert "num_workers" not in DartsConfig().to_dict()
    assert DartsConfig.from_dict(DartsConfig(num_workers=2).to_dict()) == DartsConfig(num_workers=2)
    with pytest.raises(ValueError, match="cannot be split"):
        split_indices(1, 0.5)


# ------------------------------------------------------------------------------------ memory
def test_memory_estimate_matches_the_analytic_figure_and_scales() -> None:
    """The reference network at 32x32: about 129 MB of saved activations per sample (analytic count,
    nas-algorithms.md 2.7), i.e. about 8 GiB at batch 64."""
    estimate = estimate_memory(DartsSpace(), DartsConfig(), (3, 32, 32))
    assert 110e6 < estimate.per_sample < 150e6
    assert 7 * 2**30 < estimate.at(64) < 10 * 2**30
    assert estimate.at(128) - estimate.at(64) == pytest.approx(MARGIN * 64 * estimate.per_sample, rel=1e-6)
    second = estimate_memory(DartsSpace(), DartsConfig(order=2), (3, 32, 32))
    assert second.per_sample == pytest.approx(1.35 * estimate.per_sample, rel=1e-6)


def test_memory_check_refuses_an_impossible_configuration_with_a_batch_that_fits() -> None:
    space, shape = DartsSpace(), (3, 32, 32)
    config = DartsConfig(batch_size=64)
    available = 2 * 2**30
    with pytest.raises(ValueError, match=r"does not fit.*--batch-size (\d+)") as info:
        check_memory(space, config, shape, available)
    fits = int(str(info.value).split("--batch-size ")[1].split()[0])
    estimate = estimate_memory(space, config, shape)
    assert 1 <= fits < 64 and estimate.at(fits) <= available < estimate.at(fits + 1)
    assert check_memory(space, DartsConfig(batch_size=fits), shape, available) == estimate
    with pytest.raises(ValueError, match="even batch size 1 does not fit"):
        check_memory(space, config, shape, 10 * 2**20)


def test_memory_check_takes_a_workers_share_of_the_batch_and_names_the_global_batch() -> None:
    """With N workers each holds ceil(batch / N) samples; a refusal names N times the largest share."""
    space, shape = DartsSpace(), (3, 8, 8)
    small = {"init_channels": 4, "layers": 2}
    estimate = estimate_memory(space, DartsConfig(**small), shape)
    available = estimate.at(16)  # a share of 16 samples fits exactly
    assert check_memory(space, DartsConfig(**small, batch_size=64, num_workers=4), shape, available) == estimate
    assert check_memory(space, DartsConfig(**small, batch_size=61, num_workers=4), shape, available) == estimate
    with pytest.raises(ValueError, match=r"batch size 65 \(17 per worker of 4\)"):
        check_memory(space, DartsConfig(**small, batch_size=65, num_workers=4), shape, available)
    with pytest.raises(ValueError, match=r"--batch-size (\d+) \(the largest that fits on 2 workers\)") as info:
        check_memory(space, DartsConfig(**small, batch_size=64, num_workers=2), shape, available)
    fits = int(str(info.value).split("--batch-size ")[1].split()[0])
    assert fits == 2 * estimate.largest_batch(available) == 32
    assert check_memory(space, DartsConfig(**small, batch_size=fits, num_workers=2), shape, available) == estimate
