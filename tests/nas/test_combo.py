"""COMBO: diffusion kernel, slice sampler, posterior, acquisition optimiser and the strategy."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Hashable

import networkx as nx
import numpy as np
import pytest
import scipy.linalg
import torch
from datapaths import NB201_TABLE

from nas.combo import (
    DiffusionKernel,
    GraphGPSampler,
    HyperSample,
    SampledGP,
    VertexSpace,
    optimise_acquisition,
    univariate_slice_sampling,
)
from nas.combo.kernel import graph_spectrum
from nas.strategies import STRATEGIES, make_strategy
from nas.strategies.combo import Combo
from search_spaces.ir import ArchGraph
from search_spaces.spaces.base import SearchSpace, Variable
from search_spaces.spaces.nb201 import NB201Space


class ToySpace(SearchSpace):
    """Members are plain index tuples; used for synthetic objectives."""

    name = "toy"

    def __init__(self, cards: list[int], ordinal: list[bool] | None = None) -> None:
        flags = ordinal or [False] * len(cards)
        self.variables = [Variable(f"v{i}", tuple(range(c)), o)
                          for i, (c, o) in enumerate(zip(cards, flags, strict=True))]

    def encode(self, arch: Hashable) -> np.ndarray:
        return np.asarray(arch, dtype=np.int64)

    def decode_indices(self, indices: tuple[int, ...]) -> Hashable:
        return tuple(indices)

    def to_graph(self, arch: Hashable) -> ArchGraph:
        raise NotImplementedError


PEAK = (3, 1, 4, 2)
PLANTED = ToySpace([5, 5, 5, 5], [False, False, True, True])


def planted(arch: Hashable) -> float:
    """Unique maximum 10 at PEAK: categorical mismatches and ordinal distances cost, plus a ripple."""
    x = np.asarray(arch)
    penalty = 2.0 * (x[0] != PEAK[0]) + 1.5 * (x[1] != PEAK[1]) + np.abs(x[2:] - PEAK[2:]).sum()
    return float(10.0 - penalty + 0.1 * math.sin(3.0 * x.sum()))


def drive(strategy: Combo, n: int, objective=planted, fail: set[int] = frozenset()) -> list[Hashable]:
    archs = []
    for i in range(n):
        p = strategy.ask()
        archs.append(p.arch)
        strategy.tell(p.trial_id, None if i in fail else objective(p.arch))
    return archs


def small_combo(space: SearchSpace = PLANTED, seed: int = 0, **options: int) -> Combo:
    defaults = {"n_initial": 6, "n_burn": 30, "n_samples": 5, "n_random": 300, "n_starts": 6}
    return Combo(space, seed=seed, **{**defaults, **options})


# ------------------------------------------------------------------------------------ kernel
def test_kernel_is_psd_with_batched_betas() -> None:
    gen = torch.Generator().manual_seed(0)
    kernel = DiffusionKernel([5, 3, 4, 2], [False, True, True, False], batch_shape=torch.Size([3])).double()
    kernel.log_beta.data = torch.randn(3, 4, generator=gen, dtype=torch.float64) * 3.0
    x = torch.stack([torch.randint(0, c, (40,), generator=gen) for c in (5, 3, 4, 2)], 1).double()
    gram = kernel(x).to_dense().detach()
    assert gram.shape == (3, 40, 40)
    assert torch.linalg.eigvalsh(gram).min() >= -1e-9
    assert torch.allclose(kernel(x, diag=True).detach(), gram.diagonal(dim1=-2, dim2=-1))
    cross = kernel(x[:7], x[7:12]).to_dense().detach()
    assert torch.allclose(cross, gram[:, :7, 7:12])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_complete_graph_closed_form_equals_eigendecomposition(n: int) -> None:
    log_beta = torch.tensor([[-3.0], [0.0], [0.7], [4.0]], dtype=torch.float64)
    closed = DiffusionKernel([n], closed_form=True).double().factor_tables(log_beta)
    eigen = DiffusionKernel([n], closed_form=False).double().factor_tables(log_beta)
    assert torch.allclose(closed, eigen, atol=1e-12)
    assert torch.allclose(eigen.diagonal(dim1=-2, dim2=-1), torch.ones(4, 1, n, dtype=torch.float64))
    if n == 2:  # binary variables: ρ = tanh β
        assert torch.allclose(closed[:, 0, 0, 1], torch.tanh(log_beta.exp()[:, 0]))
    numpy_path = DiffusionKernel([n]).double().factor_table(0, 0.7)
    assert np.allclose(numpy_path, closed[2, 0].numpy())


@pytest.mark.parametrize("n", [2, 3, 6, 10])
def test_path_graph_laplacian_eigenvalues(n: int) -> None:
    freq, basis = graph_spectrum(n, ordinal=True)
    expected = 2.0 - 2.0 * np.cos(np.pi * np.arange(n) / n)
    assert np.allclose(freq, np.sort(expected))
    assert np.allclose(basis @ basis.T, np.eye(n))
    kernel = DiffusionKernel([n], [True]).double()
    assert np.allclose(kernel.factor_table(0, 0.3), kernel.factor_tables(torch.tensor([0.3]).double())[0].numpy())


def test_product_kernel_is_diffusion_on_the_cartesian_product_graph() -> None:
    cards, ordinal, betas = [3, 4, 2], [False, True, False], [0.4, 1.3, 0.8]
    graphs = [nx.path_graph(n) if o else nx.complete_graph(n) for n, o in zip(cards, ordinal, strict=True)]
    product = nx.cartesian_product(nx.cartesian_product(graphs[0], graphs[1]), graphs[2])
    nodes = [((a, b), c) for a, b, c in itertools.product(*[range(n) for n in cards])]
    flat = np.array([[a, b, c] for (a, b), c in nodes])
    for u, v in product.edges:  # edge weight β_i of the coordinate that changes
        fu, fv = np.array([u[0][0], u[0][1], u[1]]), np.array([v[0][0], v[0][1], v[1]])
        product.edges[u, v]["weight"] = betas[int(np.flatnonzero(fu != fv)[0])]
    lap = nx.laplacian_matrix(product, nodelist=nodes, weight="weight").toarray()
    norm = np.prod([np.mean(np.exp(-b * graph_spectrum(n, o)[0]))
                    for n, o, b in zip(cards, ordinal, betas, strict=True)])
    kernel = DiffusionKernel(cards, ordinal).double()
    kernel.log_beta.data = torch.tensor(np.log(betas))
    gram = kernel(torch.tensor(flat, dtype=torch.float64)).to_dense().detach().numpy()
    assert np.allclose(gram, scipy.linalg.expm(-lap) / norm, atol=1e-10)


# ------------------------------------------------------------------------------------ posterior
def test_slice_sampler_samples_a_gaussian() -> None:
    rng = np.random.default_rng(0)
    mu, sd = 1.5, 0.7
    x, draws = 0.0, []
    for _ in range(4000):
        x = univariate_slice_sampling(lambda v: -0.5 * ((v - mu) / sd) ** 2, x, rng)
        draws.append(x)
    draws = np.array(draws[200:])
    assert abs(draws.mean() - mu) < 0.06
    assert abs(draws.var() - sd**2) < 0.06


def test_slice_sampler_respects_support() -> None:
    rng = np.random.default_rng(1)
    x, draws = 0.5, []
    for _ in range(1500):  # uniform on [0, 1]
        x = univariate_slice_sampling(lambda v: 0.0 if 0.0 <= v <= 1.0 else -math.inf, x, rng)
        draws.append(x)
    draws = np.array(draws)
    assert draws.min() >= 0.0 and draws.max() <= 1.0 and abs(draws.mean() - 0.5) < 0.05


def _relevant_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4 categorical variables x 5 values; y depends on variables 0 and 1 only (a random table)."""
    rng = np.random.default_rng(seed)
    table = np.random.default_rng(99).normal(size=(5, 5))
    x = rng.integers(5, size=(n, 4))
    return x, table[x[:, 0], x[:, 1]] + 0.05 * rng.normal(size=n), table


def test_posterior_orders_relevant_before_irrelevant_variables_and_predicts() -> None:
    x, y, table = _relevant_data(70, seed=0)
    kernel = DiffusionKernel([5] * 4).double()
    sampler = GraphGPSampler(kernel, x, y)
    rng = np.random.default_rng(0)
    state, _ = sampler.run(sampler.initial_state(), rng, 80)
    state, samples = sampler.run(state, rng, 10)
    log_beta = np.mean([s.log_beta for s in samples], axis=0)
    assert max(log_beta[:2]) < min(log_beta[2:])  # relevant: small β (rough), irrelevant: large β
    assert np.isfinite(sampler.log_joint(state))
    x_test = np.array(list(itertools.product(range(5), range(5), [0], [3])))
    y_test = table[x_test[:, 0], x_test[:, 1]]
    mean, var = SampledGP(kernel, x, y, samples).predict(x_test)
    assert mean.shape == var.shape == (10, 25) and bool((var > 0).all())
    mse = float(((mean.mean(0).numpy() - y_test) ** 2).mean())
    assert mse < 0.25 * float(((y.mean() - y_test) ** 2).mean())


def test_likelihood_paths_agree_with_the_gpytorch_kernel() -> None:
    from gpytorch.distributions import MultivariateNormal

    from nas.combo.posterior import STABILISER, cholesky_nll

    x, y, _ = _relevant_data(40, seed=2)
    cards, ordinal = [5, 5, 5, 5], [False, True, False, True]
    kernel = DiffusionKernel(cards, ordinal)
    sampler = GraphGPSampler(kernel, x, y)
    state = HyperSample(0.1, 0.4, -2.5, np.array([-0.7, 0.3, -2.0, 1.1]))
    kernel.log_beta.data = torch.tensor(state.log_beta)
    amp, noise = math.exp(state.log_amp), math.exp(state.log_noise_var)
    gram = kernel(torch.tensor(x, dtype=torch.float64)).to_dense().detach()
    cov = amp * gram + (amp * STABILISER + noise) * torch.eye(40, dtype=torch.float64)
    nll = -float(MultivariateNormal(torch.full((40,), state.const_mean, dtype=torch.float64), cov).log_prob(
        torch.tensor(y)))
    assert math.isclose(cholesky_nll(cov.numpy(), y - state.const_mean), nll, rel_tol=1e-9)
    assert math.isclose(sampler.scalar_nll(gram.numpy())(state.const_mean, state.log_amp, state.log_noise_var), nll,
                        rel_tol=1e-9)
    assert np.allclose(np.exp(sampler.log_factors(state.log_beta).sum(0)), gram.numpy())
    assert np.isfinite(sampler.log_joint(state))


def test_expected_improvement_matches_botorch_on_a_gpytorch_model() -> None:
    from botorch.acquisition import LogExpectedImprovement
    from botorch.models.gpytorch import GPyTorchModel
    from gpytorch.distributions import MultivariateNormal
    from gpytorch.kernels import ScaleKernel
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.means import ConstantMean
    from gpytorch.models import ExactGP

    x, y, _ = _relevant_data(30, seed=1)
    sample = HyperSample(const_mean=0.2, log_amp=0.3, log_noise_var=-3.0, log_beta=np.array([-0.5, -1.0, -2.0, -3.0]))
    amp = math.exp(sample.log_amp)

    class Model(ExactGP, GPyTorchModel):
        _num_outputs = 1

        def __init__(self) -> None:
            likelihood = GaussianLikelihood()
            super().__init__(torch.tensor(x, dtype=torch.float64), torch.tensor(y), likelihood)
            self.mean_module = ConstantMean()
            self.covar_module = ScaleKernel(DiffusionKernel([5] * 4))

        def forward(self, inputs: torch.Tensor) -> MultivariateNormal:
            return MultivariateNormal(self.mean_module(inputs), self.covar_module(inputs))

    model = Model().double()
    model.mean_module.constant.data.fill_(sample.const_mean)
    model.covar_module.outputscale = amp
    model.covar_module.base_kernel.log_beta.data = torch.tensor(sample.log_beta)
    model.likelihood.noise = math.exp(sample.log_noise_var) + amp * 1e-6  # COMBO's stabiliser
    model.eval()
    x_test = np.random.default_rng(2).integers(5, size=(50, 4))
    reference = float(y.min())
    gp = SampledGP(DiffusionKernel([5] * 4).double(), x, y, [sample])
    ours = gp.expected_improvement(x_test, reference)
    x_t = torch.tensor(x_test, dtype=torch.float64)
    log_ei = LogExpectedImprovement(model, best_f=reference, maximize=False)
    theirs = log_ei(x_t[:, None, :]).detach().exp().numpy()
    assert (ours > 1e-2).sum() >= 10  # not a trivial all-zero comparison
    assert np.allclose(ours, theirs, rtol=1e-4, atol=1e-10)
    posterior = model.posterior(x_t)
    mean, var = gp.predict(x_test)
    assert torch.allclose(mean[0], posterior.mean.detach()[:, 0], atol=1e-8)
    assert torch.allclose(var[0], posterior.variance.detach()[:, 0], rtol=1e-4, atol=1e-6)


def test_kriging_believer_keeps_the_mean_and_collapses_the_variance() -> None:
    x, y, _ = _relevant_data(25, seed=3)
    samples = [HyperSample(0.0, 0.0, -4.0, np.array([-1.0, -0.5, 1.0, 2.0])),
               HyperSample(0.1, 0.2, -3.0, np.array([-0.5, -1.0, 2.0, 1.0]))]
    gp = SampledGP(DiffusionKernel([5] * 4).double(), x, y, samples)
    pending = np.array([[0, 1, 2, 3], [4, 4, 4, 4]])
    probe = np.random.default_rng(4).integers(5, size=(20, 4))
    believer = gp.condition_on_mean(pending)
    assert torch.allclose(believer.predict(probe)[0], gp.predict(probe)[0], atol=1e-8)
    assert bool((believer.predict(pending)[1] < 0.2 * gp.predict(pending)[1]).all())


# ------------------------------------------------------------------------------------ optimiser
@pytest.mark.parametrize("n_random", [100, 1000])  # random pool + spray; every unevaluated member
def test_acquisition_optimum_is_a_local_optimum_and_unevaluated(n_random: int) -> None:
    space = VertexSpace(PLANTED.variables)
    rng = np.random.default_rng(5)
    x = space.random(rng, 30)
    y = -np.array([planted(tuple(r)) for r in x])
    kernel = DiffusionKernel(space.cards.tolist(), [v.ordinal for v in PLANTED.variables]).double()
    sampler = GraphGPSampler(kernel, x, y)
    _, samples = sampler.run(sampler.initial_state(), rng, 30)
    gp = SampledGP(kernel, x, y, samples[-5:])
    score = lambda xq: gp.expected_improvement(xq, float(y.min()))  # noqa: E731
    excluded = {space.key(r) for r in x}
    best = optimise_acquisition(score, space, rng, excluded, x[int(np.argmin(y))], n_random=n_random,
                                n_spray=10, n_starts=8)
    assert space.key(best) not in excluded
    assert score(space.neighbours(best)).max() <= score(best[None])[0]


def test_vertex_space_neighbours_follow_the_graphs() -> None:
    space = VertexSpace(PLANTED.variables)
    nbrs = space.neighbours(np.array([0, 2, 0, 2]))
    assert len(nbrs) == 4 + 4 + 1 + 2  # complete, complete, path end, path middle
    assert all(int((row != [0, 2, 0, 2]).sum()) == 1 for row in nbrs)
    free = space.unexcluded_vertices({(0, 0, 0, 0), (4, 4, 4, 4)})
    assert len(free) == 623 and space.random_unexcluded(np.random.default_rng(0), {space.key(r) for r in
                                                                                    space.all_vertices()}) is None


# ------------------------------------------------------------------------------------ strategy
def test_registry_options_and_bad_input() -> None:
    assert STRATEGIES["combo"] is Combo
    assert isinstance(make_strategy("combo", PLANTED, seed=2, n_initial=4), Combo)
    for bad in ({"n_initial": -1}, {"n_initial": 0}, {"n_samples": 0}, {"n_burn": -5}, {"n_starts": 2.5},
                {"n_random": 0, "n_spray": 0}):
        with pytest.raises(ValueError, match="combo"):
            Combo(PLANTED, **bad)
    assert Combo(ToySpace([2, 2]), n_initial=50).n_initial == 4  # never more than the space holds


def test_finds_a_planted_optimum_within_a_small_budget() -> None:
    strategy = small_combo(seed=0, n_initial=10)
    archs = drive(strategy, 40)
    assert len(set(archs)) == 40  # never re-proposes
    assert strategy.best is not None and strategy.best[0] == PEAK


def test_same_seed_same_proposals() -> None:
    assert drive(small_combo(seed=3), 12) == drive(small_combo(seed=3), 12)
    assert drive(small_combo(seed=3), 12) != drive(small_combo(seed=4), 12)


def test_state_dict_round_trip_gives_the_same_next_proposal() -> None:
    a = small_combo(seed=1)
    drive(a, 10, fail={4})
    pending = a.ask()  # a proposal in flight at save time
    state = json.loads(json.dumps(a.state_dict()))
    b = small_combo(seed=77)
    b.load_state_dict(state)
    assert b.pending == a.pending and b.chain is not None and b.num_failed == 1
    assert b.ask() == a.ask()
    for s in (a, b):
        s.tell(pending.trial_id, planted(pending.arch))
    assert drive(a, 3) == drive(b, 3)


def test_failed_trials_are_forgotten_and_not_reproposed() -> None:
    strategy = small_combo(seed=2)
    archs = drive(strategy, 16, fail={1, 7, 9, 12})
    assert strategy.num_failed == 4 and len(strategy.observations) == 12
    assert len(set(archs)) == 16
    failed = {archs[i] for i in (1, 7, 9, 12)}
    assert not failed & {a for a, _ in strategy.observations}
    assert not failed & set(drive(strategy, 6))


def test_concurrent_asks_give_distinct_unevaluated_proposals() -> None:
    strategy = small_combo(seed=5)
    told = set(drive(strategy, 8))
    proposals = [strategy.ask() for _ in range(4)]  # four workers ask before any result
    archs = [p.arch for p in proposals]
    assert len(set(archs)) == 4 and not set(archs) & told
    for p in proposals:
        strategy.tell(p.trial_id, planted(p.arch))
    assert len(strategy.observations) == 12


def test_exhausting_a_tiny_space_keeps_proposing() -> None:
    space = ToySpace([2, 3], [False, True])
    strategy = small_combo(space, seed=0, n_initial=2)
    archs = drive(strategy, 8, objective=lambda a: float(sum(a)))
    assert len(set(archs[:6])) == 6 and set(archs) == set(itertools.product(range(2), range(3)))


def test_combo_on_the_nb201_table() -> None:
    if not NB201_TABLE.is_file():
        pytest.skip(f"NAS-Bench-201 table {NB201_TABLE} is missing")
    from nas.benchmarks.nb201 import NB201Table, run_protocol, strategy_ask_tell

    table = NB201Table(NB201_TABLE)
    strategy = Combo(NB201Space(), seed=0, n_initial=10, n_burn=50, n_samples=5, n_random=2000)
    result = run_protocol(*strategy_ask_tell(strategy), table, time_budget=1e9, max_queries=30)
    assert result.queries == 30 and table.row(result.best_arch) >= 0
    assert result.best_valid_12ep == max(s for _, s in strategy.observations)
    assert len({a for a, _ in strategy.observations}) == 30


@pytest.mark.parametrize("space_name", ["binary", "macro", "darts"])
def test_combo_runs_on_the_binary_macro_and_darts_spaces(space_name: str) -> None:
    """COMBO on COMBO's own 31-bit NAS space and on the classic-block macro space (ordinal variables:
    path graphs): model-based proposals are distinct members that build into networks."""
    from search_spaces.spaces import make_space

    space = make_space(space_name)
    strategy = Combo(space, seed=0, n_initial=5, n_burn=10, n_samples=2, n_random=200, n_starts=4)
    score = lambda arch: float(np.sin(space.encode(arch) @ np.arange(1, len(space.variables) + 1)))  # noqa: E731
    archs = drive(strategy, 8, objective=score)
    assert all(space.to_graph(a).validate() for a in archs)
    assert len(set(archs)) == 8 and strategy.chain is not None and len(strategy.chain.log_beta) == len(space.variables)


def test_combo_through_the_cli_benchmark_mode(tmp_path, capsys) -> None:
    if not NB201_TABLE.is_file():
        pytest.skip(f"NAS-Bench-201 table {NB201_TABLE} is missing")
    from nas.cli import main

    run_dir = tmp_path / "run"
    argv = ["search", "--benchmark", "nb201", "--table", str(NB201_TABLE), "--strategy", "combo", "--trials", "24",
            "--run-dir", str(run_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "combo, seed 0: 24 queries" in out and "200-epoch test acc" in out
    lines = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert len({json.dumps(e["arch"], sort_keys=True) for e in lines if e["event"] == "propose"}) == 24


def test_posterior_on_data_drawn_from_a_known_diffusion_kernel() -> None:
    """y ~ GP(0.5, σ_f² K_β + σ_n² I) with known β = (0.2, 1.5, 50) on 3 x 5 categories: the sampled
    posterior orders the betas as the truth does, finds the small noise, and its predictions on
    held-out members are calibrated (most within 2 posterior standard deviations)."""
    true_log_beta = np.log([0.2, 1.5, 50.0])
    kernel = DiffusionKernel([5, 5, 5]).double()
    members = np.array(list(itertools.product(range(5), repeat=3)))
    with torch.no_grad():
        kernel.log_beta.copy_(torch.as_tensor(true_log_beta))
        gram = kernel(torch.as_tensor(members, dtype=torch.float64)).to_dense().numpy()
    rng = np.random.default_rng(3)
    cov = 1.0 * gram + 1e-3 * np.eye(len(members))
    f = 0.5 + np.linalg.cholesky(cov) @ rng.normal(size=len(members))
    train = rng.permutation(len(members))[:70]
    test = np.setdiff1d(np.arange(len(members)), train)
    sampler = GraphGPSampler(kernel, members[train], f[train])
    state, _ = sampler.run(sampler.initial_state(), rng, 100)
    state, samples = sampler.run(state, rng, 20)
    log_beta = np.median([s.log_beta for s in samples], axis=0)
    assert log_beta[0] < log_beta[1] < log_beta[2], log_beta
    assert np.median([s.log_noise_var for s in samples]) < np.log(0.05)
    mean, var = SampledGP(kernel, members[train], f[train], samples).predict(members[test])
    z = (mean.mean(0).numpy() - f[test]) / np.sqrt(var.mean(0).numpy() + 1e-3)
    assert float(np.mean(np.abs(z) < 2.0)) >= 0.8
