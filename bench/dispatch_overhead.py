"""Dispatch overhead: 40 trials of a fixed 2-second trainable on 2 CPUs, ours vs plain Ray Tune.

"Ours" is the path `nas search` takes (nas.Experiment -> nas.engine -> nas.ray_backend.dispatch):
our Searcher serving a journaled SearchRun (strategy ask/tell, canonical hashing and params/FLOPs
of each proposal, stored graphs, fsynced journal lines and state snapshots) and nas.trial.run_trial
in the worker, with an evaluator that sleeps instead of training.
"Plain" is ray.tune.Tuner with num_samples=40 and Tune's default variant generator, once with
Tune's defaults and once with ``reuse_actors=True`` as ours uses (like-for-like: what our
Searcher, journal and hashing cost on top of Tune). All run on the same embedded Ray (started
once, 2 CPUs, 1 CPU per trial), alternating, several repetitions; reports median wall-time
ratios ours / plain (target <= 1.10).

    python bench/dispatch_overhead.py [--trials 40] [--seconds 2] [--reps 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

import nas
from nas.evaluators import Evaluator
from search_spaces.spaces import make_space


def fixed_trainable(config: dict[str, Any]) -> None:
    time.sleep(config["seconds"])
    tune.report({"score": 1.0, "val_acc": 1.0})


def run_plain(trials: int, seconds: float, storage: Path, reuse_actors: bool | None) -> float:
    tuner = tune.Tuner(tune.with_resources(fixed_trainable, {"cpu": 1}),
                       param_space={"seconds": seconds},
                       tune_config=tune.TuneConfig(num_samples=trials, metric="score", mode="max",
                                                   reuse_actors=reuse_actors),
                       run_config=tune.RunConfig(storage_path=str(storage), name="plain", verbose=0))
    start = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - start


class Sleep(Evaluator):
    """Evaluates nothing: sleeps for the fixed trial time (the graph is not even compiled)."""

    name = "sleep"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def evaluate(self, graph: Any, trial: Any) -> float:
        time.sleep(self.seconds)
        return 1.0


def run_ours(trials: int, seconds: float, run_dir: Path, seed: int) -> float:
    space = make_space("macro", input_shape=(1, 8, 8), num_classes=10)
    exp = nas.Experiment(space=space, evaluator=Sleep(seconds), strategy="evolution", trials=trials,
                         run_dir=run_dir, seed=seed, resources={"cpu": 1})
    start = time.perf_counter()
    exp.run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    ideal = args.trials * args.seconds / 2
    times: dict[str, list[float]] = {"ours": [], "plain": [], "plain_reuse": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.reps):
                order = list(times) if rep % 2 == 0 else list(times)[::-1]
                for which in order:
                    out = Path(tmp) / f"{which}{rep}"
                    if which == "ours":
                        times[which].append(run_ours(args.trials, args.seconds, out, seed=rep))
                    else:
                        times[which].append(run_plain(args.trials, args.seconds, out,
                                                      reuse_actors=True if which == "plain_reuse" else None))
                print(f"rep {rep}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    finally:
        ray.shutdown()
    print(f"{args.trials} trials x {args.seconds:g} s on 2 CPUs (ideal {ideal:.0f} s); medians: "
          + ", ".join(f"{k} {statistics.median(v):.1f} s" for k, v in times.items()))
    for baseline, label in (("plain", "plain Ray Tune (defaults)"), ("plain_reuse", "plain Ray Tune, reuse_actors")):
        ratios = [o / p for o, p in zip(times["ours"], times[baseline], strict=True)]
        print(f"wall-time ratio ours / {label}: median {statistics.median(ratios):.3f} "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f}); target <= 1.10")


if __name__ == "__main__":
    main()
