"""Data-parallel DARTS without Ray: N gloo processes (spawned here) compute what one process computes.

Global batch norm against torch's BatchNorm2d on the whole batch (outputs, input and weight
gradients, running statistics; a shard may be empty; in float32, channels whose variance is tiny
next to their mean), then whole searches on 2 replicas against
the single-process search with the same global batch and seed: first order on the DARTS space with
an uneven last batch (shards of 1 and 0 samples), second order with augmentation and the Hessian
eigenvalue on the NAS-Bench-201 space (batch norm without running statistics, so evaluation is
synchronised too). The Ray Train launch is tested in test_darts_workers.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch import nn

from nas.darts import DartsConfig, darts_search
from nas.darts.adapters import DartsAdapter, NB201Adapter
from nas.darts.distributed import SINGLE, GlobalBatchNorm2d, ReplicaGroup, use_global_batch_norm
from nas.darts.supernet import SearchNetwork
from search_spaces.spaces.darts import DartsSpace
from search_spaces.spaces.nb201 import NB201Space

TOLERANCE = 1e-9  # float64: sums in another order (in float32 Adam's normalised steps amplify them to ~1e-5)


def _replica_main(rank: int, world_size: int, rendezvous: str, out: str, device: str, fn: Callable[..., None],
                  args: tuple[Any, ...]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        fn(ReplicaGroup.from_process_group(device), Path(out), *args)
    finally:
        dist.destroy_process_group()


def run_replicas(world_size: int, tmp_path: Path, fn: Callable[..., None], *args: Any, device: str = "cpu") -> Path:
    """Run ``fn(replicas, out_dir, *args)`` on ``world_size`` gloo processes (tensors on ``device``: gloo
    reduces CUDA tensors too, so one GPU can hold both replicas); returns out_dir."""
    out = tmp_path / "out"
    out.mkdir()
    mp.start_processes(_replica_main, args=(world_size, str(tmp_path / "rendezvous"), str(out), device, fn, args),
                       nprocs=world_size, start_method="spawn")
    return out


# ------------------------------------------------------------------------------------ batch norm
NORM_CASES = ((5, torch.float64), (1, torch.float64), (6, torch.float32))  # shards 3/2, 1/0 and 3/3


def _norm_inputs(batch: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, upstream gradient), (batch, 3, 4, 4). In float32 the mean is 1000 standard deviations: a
    one-pass E[x²] - E[x]² would be about 10% off the variance (float32's 1e-7 times 1000²), while
    any two-pass computation is about 1e-4 off (the mean's rounding, 1e-6, over the deviation, 1e-2)."""
    g = torch.Generator().manual_seed(batch)
    scale, offset = (1.0, 3.0) if dtype == torch.float64 else (1e-2, 10.0)
    x = offset + scale * torch.randn(batch, 3, 4, 4, generator=g, dtype=torch.float64)
    return x.to(dtype), torch.randn(batch, 3, 4, 4, generator=g, dtype=dtype)


def _reference_norm(affine: bool, track: bool, dtype: torch.dtype) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(3, affine=affine, track_running_stats=track).to(dtype)
    if affine:
        with torch.no_grad():
            norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
            norm.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return norm


def _norm_on_replica(replicas: ReplicaGroup, out: Path) -> None:
    results = {}
    for batch, dtype in NORM_CASES:
        for affine, track in ((True, True), (False, False)):
            x, upstream = _norm_inputs(batch, dtype)
            norm = use_global_batch_norm(nn.Sequential(_reference_norm(affine, track, dtype)))[0]
            assert isinstance(norm, GlobalBatchNorm2d)
            x_local, up_local = replicas.shard(x, upstream)
            x_local = x_local.clone().requires_grad_(True)
            y = norm(x_local)
            (y * up_local).sum().backward()
            key = f"b{batch}_{affine}_{track}"
            results[f"{key}_y"] = y.detach()
            results[f"{key}_dx"] = x_local.grad
            params = [p.grad for p in norm.parameters()]
            results.update({f"{key}_dparam{i}": g for i, g in enumerate(replicas.sum(params))})
            if track:
                results[f"{key}_mean"], results[f"{key}_var"] = norm.running_mean, norm.running_var
            norm.eval()  # eval: running statistics (local), or batch statistics again (synchronised)
            results[f"{key}_eval"] = norm(replicas.shard(x)[0]).detach()
    save_file({k: v.contiguous() for k, v in results.items()}, str(out / f"rank{replicas.rank}.safetensors"))


def close_to_scale(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to 2e-3 of the expected tensor's largest magnitude (float32 with a large mean)."""
    assert float((actual - expected).abs().max()) <= 2e-3 * float(expected.abs().max())


def test_global_batch_norm_is_batch_norm_over_the_whole_batch(tmp_path: Path) -> None:
    out = run_replicas(2, tmp_path, _norm_on_replica)
    ranks = [load_file(str(out / f"rank{r}.safetensors")) for r in range(2)]
    for batch, dtype in NORM_CASES:
        for affine, track in ((True, True), (False, False)):
            key = f"b{batch}_{affine}_{track}"
            x, upstream = _norm_inputs(batch, dtype)
            x.requires_grad_(True)
            norm = _reference_norm(affine, track, dtype)
            y = norm(x)
            (y * upstream).sum().backward()
            close = torch.testing.assert_close if dtype == torch.float64 else close_to_scale
            close(torch.cat([r[f"{key}_y"] for r in ranks]), y.detach())
            close(torch.cat([r[f"{key}_dx"] for r in ranks]), x.grad)
            for i, p in enumerate(norm.parameters()):
                for r in ranks:  # summed over the replicas: the whole batch's gradient, on every one
                    close(r[f"{key}_dparam{i}"], p.grad)
            if track:
                for r in ranks:
                    close(r[f"{key}_mean"], norm.running_mean)
                    close(r[f"{key}_var"], norm.running_var)
            norm.eval()
            close(torch.cat([r[f"{key}_eval"] for r in ranks]), norm(x).detach())
    assert ranks[0]["b1_True_True_y"].shape[0] == 1 and ranks[1]["b1_True_True_y"].shape[0] == 0


def test_one_replica_is_a_no_op() -> None:
    x = torch.arange(10.0).reshape(5, 2)
    assert SINGLE.shard(x)[0] is x and SINGLE.sum([x])[0] is x and SINGLE.sum_scalars(1, 2.5) == [1.0, 2.5]
    net = nn.Sequential(nn.BatchNorm2d(2))
    assert SINGLE.prepare(net) is net and type(net[0]) is nn.BatchNorm2d
    with pytest.raises(ValueError, match="rank 2"):
        ReplicaGroup(2, 2)


def test_shards_are_contiguous_and_cover_the_batch() -> None:
    x = torch.arange(7)
    shards = [ReplicaGroup(r, 3).shard(x)[0].tolist() for r in range(3)]
    assert shards == [[0, 1, 2], [3, 4], [5, 6]]
    assert [ReplicaGroup(r, 2).shard(x[:1])[0].tolist() for r in range(2)] == [[0], []]


# ------------------------------------------------------------------------------------ whole searches
class RecordingAdapter:
    """Wraps a built-in adapter class: its search network is in float64, and kept (to compare weights)."""

    @staticmethod
    def of(base: type) -> Any:
        class Recording(base):  # type: ignore[misc, valid-type]
            net: SearchNetwork | None = None

            def network(self, *args: Any) -> SearchNetwork:
                Recording.net = super().network(*args).double()
                return Recording.net

        return Recording


SEARCHES: dict[str, dict[str, Any]] = {
    # 50 samples: 25 for the weights in batches of 12, 12 and 1 (shards 6/6, 6/6, 1/0)
    "darts-first-order": {"space": "darts", "samples": 50, "options": {
        "epochs": 2, "batch_size": 12, "init_channels": 4, "layers": 3, "augment": "none", "seed": 3}},
    # second order, augmentation drawn for the whole batch, Hessian eigenvalue each epoch, batch norm
    # without running statistics (evaluation synchronised)
    "nb201-second-order": {"space": "nb201", "samples": 40, "options": {
        "epochs": 2, "batch_size": 9, "order": 2, "augment": "crop-flip", "hessian_every": 1,
        "hessian_iterations": 3, "seed": 4}},
}


def _search_inputs(name: str) -> tuple[Any, Any, torch.Tensor, torch.Tensor]:
    spec = SEARCHES[name]
    g = torch.Generator().manual_seed(11)
    x = torch.randn(spec["samples"], 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (spec["samples"],), generator=g)
    if spec["space"] == "darts":
        return DartsSpace(num_classes=4, input_shape=(3, 8, 8)), RecordingAdapter.of(DartsAdapter), x, y
    return NB201Space(C=4, N=1, num_classes=4, input_shape=(3, 8, 8)), RecordingAdapter.of(NB201Adapter), x, y


def _search(replicas: ReplicaGroup, name: str) -> tuple[Any, dict[str, torch.Tensor]]:
    space, adapter_class, x, y = _search_inputs(name)
    config = DartsConfig(**SEARCHES[name]["options"], num_workers=replicas.world_size)
    adapter = adapter_class(space)
    result = darts_search(space, config, x, y, replicas.device, adapter=adapter, replicas=replicas)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in adapter.net.state_dict().items()}
    return result, state


def _search_on_replica(replicas: ReplicaGroup, out: Path, name: str) -> None:
    result, state = _search(replicas, name)
    save_file(state, str(out / f"rank{replicas.rank}.safetensors"))
    history = [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in result.history]
    (out / f"rank{replicas.rank}.json").write_text(json.dumps({"arch": str(result.arch), "history": history}))


def max_differences(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> dict[str, float]:
    """Largest absolute difference of the alphas, the weights and the batch-norm running statistics."""
    assert set(reference) == set(other)
    out = {"alphas": 0.0, "weights": 0.0, "statistics": 0.0}
    for key, ref in reference.items():
        kind = "alphas" if key.startswith("alphas.") else "weights" if ref.is_floating_point() and \
            not key.endswith(("running_mean", "running_var")) else "statistics"
        if ref.is_floating_point():
            out[kind] = max(out[kind], float((ref - other[key]).abs().max()) if ref.numel() else 0.0)
        else:
            assert torch.equal(ref, other[key]), key  # num_batches_tracked
    return out


def check_two_replicas_against_one(tmp_path: Path, name: str, device: str) -> dict[str, float]:
    reference, state = _search(ReplicaGroup(device=device), name)
    out = run_replicas(2, tmp_path, _search_on_replica, name, device=device)
    ranks = [load_file(str(out / f"rank{r}.safetensors")) for r in range(2)]
    logs = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert logs[0] == logs[1] and all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # replicas agree
    diff = max_differences(state, ranks[0])
    assert max(diff.values()) < TOLERANCE, diff
    assert logs[0]["arch"] == str(reference.arch)
    for mine, theirs in zip(reference.history, logs[0]["history"], strict=True):
        for key in ("train_loss", "train_acc", "valid_loss", "valid_acc", "hessian_eigenvalue"):
            if key in mine:
                assert theirs[key] == pytest.approx(mine[key], rel=1e-9, abs=1e-12), key
    assert reference.history[0]["valid_loss"] != reference.history[-1]["valid_loss"]  # it did train
    return diff


@pytest.mark.parametrize("name", list(SEARCHES))
def test_two_replicas_search_like_one_process(tmp_path: Path, name: str) -> None:
    check_two_replicas_against_one(tmp_path, name, "cpu")


@pytest.mark.gpu
def test_two_replicas_on_cuda_search_like_one_process(tmp_path: Path) -> None:
    """Both replicas on the one GPU (gloo reduces CUDA tensors; NCCL would need a GPU per replica)."""
    check_two_replicas_against_one(tmp_path, "darts-first-order", "cuda")


def test_a_search_refuses_a_replica_count_other_than_num_workers() -> None:
    space, _, x, y = _search_inputs("darts-first-order")
    with pytest.raises(ValueError, match="num_workers=2 but this search runs on 1"):
        darts_search(space, DartsConfig(num_workers=2, epochs=1, batch_size=12), x, y)
