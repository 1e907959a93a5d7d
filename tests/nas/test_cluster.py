"""A two-node Ray cluster on this machine: `nas search --address` places trials on both nodes.

The test starts its own head and worker (`ray start --block`, each in a new session), with token
authentication (a token generated for this test session), no dashboard, a private temp dir and
free ports, and stops exactly those processes by process group and PID: never `ray stop`, which
would stop other users' Ray on this machine. Ray resolves --node-ip-address=127.0.0.1 to the
machine's address and its GCS listens on all interfaces, so loopback-only binding is not possible;
the token keeps the cluster closed to others.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from ray_helpers import Reaper, events, ray_env, read_journal, run_nas

from nas.export.exporter import import_source
from nas.export.weights import load_weights, read_metadata
from nas.rundir import RunView
from search_spaces.compiler import GraphModule


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_cli() -> list[str]:
    script = Path(sys.executable).with_name("ray")
    if script.is_file():
        return [str(script)]
    found = shutil.which("ray")
    assert found, "the `ray` command is not installed"
    return [found]


ALIVE_NODES = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
deadline = time.monotonic() + float(sys.argv[2])
while True:
    alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    if len(alive) >= int(sys.argv[3]) or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print(json.dumps(alive))
"""


@dataclass
class Cluster:
    address: str
    node_ids: list[str]
    env: dict[str, str]


@pytest.fixture
def two_node_cluster(ray_tmp: Path) -> Iterator[Cluster]:
    env = ray_env(ray_tmp)
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--num-gpus=0", "--disable-usage-stats", "--block"]
    head_cmd = [*ray_cli(), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                "--include-dashboard=false", f"--temp-dir={ray_tmp}",
                f"--dashboard-agent-listen-port={free_port()}", *common]
    worker_cmd = [*ray_cli(), "start", f"--address={address}", "--node-ip-address=127.0.0.1",
                  f"--dashboard-agent-listen-port={free_port()}", *common]
    reaper = Reaper()
    reaper.track_temp_dir(ray_tmp)
    logs = []
    try:
        for name, cmd in (("head", head_cmd), ("worker", worker_cmd)):
            log = (ray_tmp / f"{name}.log").open("w")
            logs.append(log)
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            reaper.track_group(proc)
            if name == "head":  # the worker's `ray start` needs the head's GCS up
                deadline = time.monotonic() + 60
                while not any((ray_tmp / "session_latest" / "sockets").glob("raylet*")):
                    assert proc.poll() is None, f"ray start --head exited:\n{(ray_tmp / 'head.log').read_text()}"
                    assert time.monotonic() < deadline, "the head node did not start in 60 s"
                    time.sleep(0.1)
        probe = subprocess.run([sys.executable, "-c", ALIVE_NODES, address, "90", "2"], env=env,
                               capture_output=True, text=True, timeout=150)
        assert probe.returncode == 0, probe.stderr
        node_ids = json.loads(probe.stdout.strip().splitlines()[-1])
        assert len(node_ids) == 2, (f"expected 2 alive nodes, got {node_ids}\nhead:\n"
                                    f"{(ray_tmp / 'head.log').read_text()}\nworker:\n"
                                    f"{(ray_tmp / 'worker.log').read_text()}")
        yield Cluster(address, node_ids, env)
    finally:
        survivors = reaper.kill_all(term_grace=3)
        for log in logs:
            log.close()
    assert not survivors, f"cluster processes survived: {survivors}"


def test_search_on_a_two_node_cluster_uses_both_nodes(tmp_path: Path, two_node_cluster: Cluster) -> None:
    """Trials on both nodes; their weights reach the run through Tune's storage (a shared path standing
    in for NFS, apart from the run directory) and `nas export` gives every trial's trained weights."""
    run_dir, shared = tmp_path / "run", tmp_path / "shared-store"
    result = run_nas(["search", "--address", two_node_cluster.address, "--trials", "4", "--epochs", "4",
                      "--data-limit", "1000", "--cpus-per-trial", "1", "--storage", str(shared), "--run-dir",
                      str(run_dir)], two_node_cluster.env)
    assert result.returncode == 0, result.stdout
    results = events(read_journal(run_dir), "result")
    assert sorted(e["trial"] for e in results) == [0, 1, 2, 3]
    assert all(e["status"] == "ok" for e in results), results
    nodes = {e["metrics"]["node"] for e in results}
    assert nodes == set(two_node_cluster.node_ids), f"trials ran on {nodes}, cluster nodes {two_node_cluster.node_ids}"
    assert not list((run_dir / "tune").rglob("*.safetensors")), "trials wrote weights outside the storage"
    for e in results:
        stored = Path(e["metrics"]["weights"])
        assert stored.is_file() and shared in stored.parents, e["metrics"]
        out = tmp_path / "export" / f"trial_{e['trial']}.py"
        exported = run_nas(["export", str(run_dir), "--trial", str(e["trial"]), "--out", str(out)],
                           two_node_cluster.env, timeout=120)
        assert exported.returncode == 0, exported.stdout
        weights = out.with_suffix(".safetensors")
        model = getattr(import_source(out), read_metadata(weights)["class_name"])()
        model.load_state_dict(load_weights(weights))
        trained = GraphModule(RunView(run_dir).graph(e["trial"]))
        trained.load_state_dict(load_weights(stored))  # type: ignore[arg-type]
        x = torch.randn(4, *trained.input_shape)
        model.eval(), trained.eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), trained(x), atol=1e-6, rtol=0)  # the trial's trained weights
