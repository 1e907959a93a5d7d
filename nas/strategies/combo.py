"""COMBO (Oh et al., NeurIPS 2019) behind the ask/tell interface; see :mod:`nas.combo`.

Scores are maximised; COMBO minimises, so the GP models ``y = -score``. :mod:`nas.combo` (gpytorch,
scipy) is imported when a Combo is built, so importing the strategy registry stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.strategies.base import Score, Strategy, score_to_json
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace

if TYPE_CHECKING:
    from nas.combo.posterior import HyperSample


class Combo(Strategy):
    """Combinatorial Bayesian optimisation with a diffusion-kernel GP (nas-algorithms.md section 3).

    Each variable is a graph (complete for categorical, path for ordinal); the GP's
    hyper-parameters are slice-sampled in one chain continued across asks (``n_burn`` sweeps
    on the first model-based ask, then ``n_samples`` sweeps per ask, each sweep's state one
    sample), and the proposal maximises expected improvement averaged over the samples with
    COMBO's random/spray starts and greedy ascent (``n_random``, ``n_spray``, ``n_starts``).

    * Initial design: uniformly random distinct members until ``n_initial`` results are told
      or in flight (at most the space's size; default 20 as in COMBO's benchmarks), and in any
      case until two results are told (the model needs them).
    * Never proposes a member that was told, failed, stopped early or is pending, unless every
      member is (then a random member, without modelling).
    * Trials stopped early (``tell(..., budget=b)``): the low-fidelity score stays out of the GP
      (it models full-budget results only); the member is not proposed again.
    * Linear algebra that fails even after its fallback chains (:mod:`nas.combo.linalg`) never
      ends the search: that ask proposes a random unproposed member (``model_failures`` counts them,
      ``last_model_error`` says why).
    * Concurrent asks (pending proposals): Kriging believer. Pending members enter each
      sample's GP observed at that sample's posterior mean, so their EI collapses and
      concurrent proposals differ. The hyper-parameter chain uses told results only.
    * Failed trials (``score`` None/NaN/inf): forgotten as the base contract says (never in the
      GP data; counted in ``num_failed``); the member is remembered so it is not proposed again.
    * ``state_dict`` is plain JSON: options, told results and failed members (``space.to_json``),
      the chain's last state as floats and the RNG state; a restored strategy makes the same
      next proposal as the original.
    * Multi-objective (``num_objectives`` >= 2): ParEGO (Knowles 2006). Each model-based ask draws
      a weight vector uniformly from the simplex and scalarises the told vectors with BoTorch's
      augmented Chebyshev scalarisation (each objective min-max normalised over the told results,
      rho = 0.05); COMBO then runs unchanged on that one output (one GP, its one sampler chain,
      EI, the same acquisition optimiser and Kriging believer). The random weights spread
      consecutive proposals along the front. Chosen over expected hypervolume improvement on one
      GP per objective, which we built and measured: EHVI was better on smooth additive objectives
      but worse on NAS-Bench-201 (normalised hypervolume after 100 queries 0.68 over 6 seeds,
      against 0.79 over 30), whose accuracy has the degenerate cells of real cell spaces (no input-output path:
      chance accuracy); a diffusion-kernel GP of accuracy alone fits them poorly and EHVI then
      chases the near-zero-latency corner. ParEGO also keeps the cost of an ask that of
      single-objective COMBO, for any number of objectives.
    """

    name = "combo"
    multi_objective = True

    def __init__(self, space: SearchSpace, seed: int = 0, n_initial: int = 20, n_burn: int = 100,
                 n_samples: int = 10, n_random: int = 20_000, n_spray: int = 10, n_starts: int = 20,
                 num_objectives: int = 1) -> None:
        super().__init__(space, seed, num_objectives)
        options = {"n_initial": n_initial, "n_burn": n_burn, "n_samples": n_samples, "n_random": n_random,
                   "n_spray": n_spray, "n_starts": n_starts}
        minimum = {"n_initial": 1, "n_burn": 0, "n_samples": 1, "n_random": 0, "n_spray": 0, "n_starts": 1}
        for key, value in options.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum[key]:
                raise InputError(f"combo: {key} must be an int >= {minimum[key]}, got {value!r}")
        if n_random + n_spray < 1:
            raise InputError("combo: n_random + n_spray must be >= 1 (no candidates to start from)")
        from nas.combo import DiffusionKernel, VertexSpace

        self.options = options
        self.vertices = VertexSpace(space.variables)
        self.kernel = DiffusionKernel(self.vertices.cards.tolist(), [v.ordinal for v in space.variables])
        self.observations: list[tuple[Hashable, Score]] = []  # told results in tell order
        self.failed: list[Hashable] = []
        self.partial: list[tuple[Hashable, Score, float]] = []  # (member, score, budget) of early-stopped trials
        self.model_failures = 0
        self.last_model_error: str | None = None
        self.chain: HyperSample | None = None  # the sampler's last state (None until burn-in)
        self.last_timing: dict[str, float] = {}  # seconds of the last model-based ask, by stage

    @property
    def n_initial(self) -> int:
        """The random design's size: ``n_initial`` capped at the number of members."""
        return int(min(self.options["n_initial"], self.vertices.size))

    # ------------------------------------------------------------------ ask / tell
    def _excluded(self) -> set[tuple[int, ...]]:
        archs = ([a for a, _ in self.observations] + self.failed + [a for a, _, _ in self.partial]
                 + list(self.pending.values()) + list(self.proposed))
        return {self.vertices.key(self.space.encode(a)) for a in archs}

    def _propose(self) -> Hashable:
        excluded = self._excluded()
        n_obs = len(self.observations)
        if n_obs + len(self.pending) < self.n_initial or n_obs < 2 or len(excluded) >= self.vertices.size:
            x = self.vertices.random_unexcluded(self.rng, excluded)
            return self.space.decode(x if x is not None else self.vertices.random(self.rng, 1)[0])
        from nas.combo import PosteriorFailure

        try:
            return self.space.decode(self._model_proposal(excluded))
        except (PosteriorFailure, np.linalg.LinAlgError) as err:
            self.model_failures += 1
            self.last_model_error = f"{type(err).__name__}: {err}"
            x = self.vertices.random_unexcluded(self.rng, excluded)
            return self.space.decode(x if x is not None else self.vertices.random(self.rng, 1)[0])

    def _model_proposal(self, excluded: set[tuple[int, ...]]) -> np.ndarray:
        from nas.combo import GraphGPSampler, SampledGP, optimise_acquisition

        x = np.stack([self.space.encode(a) for a, _ in self.observations])
        y = self._targets()
        t0 = time.perf_counter()
        sampler = GraphGPSampler(self.kernel, x, y)
        if self.chain is None:
            self.chain, _ = sampler.run(sampler.initial_state(), self.rng, self.options["n_burn"])
        self.chain, samples = sampler.run(self.chain, self.rng, self.options["n_samples"])
        t1 = time.perf_counter()
        gp = SampledGP(self.kernel, x, y, samples)
        if self.pending:
            gp = gp.condition_on_mean(np.stack([self.space.encode(a) for a in self.pending.values()]))
        reference = float(y.min())
        proposal = optimise_acquisition(
            lambda xq: gp.expected_improvement(xq, reference), self.vertices, self.rng, excluded,
            incumbent=x[int(np.argmin(y))], n_random=self.options["n_random"], n_spray=self.options["n_spray"],
            n_starts=self.options["n_starts"])
        self.last_timing = {"sampling": t1 - t0, "acquisition": time.perf_counter() - t1}
        return proposal

    def _targets(self) -> np.ndarray:
        """What the GP models, to be minimised, one per told result: ``-score``; multi-objective, the
        ParEGO scalarisation of the told vectors with weights drawn for this ask."""
        if not self.multi:
            return -np.array([s for _, s in self.observations], dtype=np.float64)
        import torch
        from botorch.utils.multi_objective.scalarization import get_chebyshev_scalarization

        values = torch.tensor([s for _, s in self.observations], dtype=torch.float64)  # (n, m), maximised
        weights = torch.as_tensor(self.rng.dirichlet(np.ones(self.num_objectives)), dtype=torch.float64)
        return -get_chebyshev_scalarization(weights, values)(values).numpy()

    def _on_result(self, trial_id: int, arch: Hashable, score: Score) -> None:
        self.observations.append((arch, score))

    def _on_failure(self, trial_id: int, arch: Hashable) -> None:
        self.failed.append(arch)

    def _on_partial(self, trial_id: int, arch: Hashable, score: Score, budget: float) -> None:
        self.partial.append((arch, score, budget))

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict[str, Any]:
        return {"options": dict(self.options),
                "observations": [[self._arch_json(a), score_to_json(s)] for a, s in self.observations],
                "failed": [self._arch_json(a) for a in self.failed],
                "partial": [[self._arch_json(a), score_to_json(s), b] for a, s, b in self.partial],
                "model_failures": self.model_failures,
                "chain": None if self.chain is None else self.chain.to_json()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        from nas.combo import HyperSample

        self.options = {k: int(v) for k, v in state["options"].items()}
        self.observations = [(self._arch_from_json(a), self._score(s)) for a, s in state["observations"]]
        self.failed = [self._arch_from_json(a) for a in state["failed"]]
        self.partial = [(self._arch_from_json(a), self._score(s), float(b)) for a, s, b in state.get("partial", [])]
        self.model_failures = int(state.get("model_failures", 0))
        self.chain = None if state["chain"] is None else HyperSample.from_json(state["chain"])
