#!/usr/bin/env bash
# Multi-node `nas search` on Slurm: a Ray 2.60.0 cluster inside one allocation (head on the first
# node, one worker per other node, each an `srun` step), token auth on, dashboard on 127.0.0.1.
#
#   sbatch launch/slurm.sh                                  # defaults below
#   NAS_TRIALS=500 sbatch --nodes=8 launch/slurm.sh --epochs 5   # extra arguments go to `nas search`
#   NAS_DATASET=digits NAS_GPUS_PER_TRIAL=0 sbatch launch/slurm.sh   # CPU only: also drop --gpus-per-task
#
# Set-up, once, in a virtualenv on a filesystem every node sees (Python 3.11):
#   python3.11 -m venv ~/venvs/nas
#   ~/venvs/nas/bin/pip install torch==2.13.0           # PyPI: the CUDA build
#   ~/venvs/nas/bin/pip install "ray[tune]==2.60.0"
#   ~/venvs/nas/bin/pip install -e /path/to/nas          # or "git+<repo url>"
#
# Resume: after a time limit, preemption or failure, submit the same command again (same settings,
# same NAS_RUN_DIR and NAS_DATA_ROOT: they are part of the run's recorded configuration). The run
# directory holds the search journal and `nas search` picks up where it stopped. The driver runs on
# the first node, loads the dataset there and ships it to the trials through Ray; trials report
# back over Ray. So run and data directories must persist between jobs (home/project storage, not
# node-local /tmp); they don't need to be visible from the other nodes.
#
# Dashboard: bound to 127.0.0.1 on the head node. From your machine:
#   ssh -N -L 8265:127.0.0.1:8265 -J <login-node> <head-node>   # head node: see the job log
# then open http://127.0.0.1:8265 and paste the token (cat "$NAS_RAY_TOKEN_DIR/token.<jobid>").
#
# Cleanup: on exit (normal end, error, scancel, time limit) the script stops only what it started:
# the `srun` steps running `ray start --block` (Slurm then kills every process of those steps).
# No `ray stop`: on shared nodes that would kill other users' and other jobs' Ray processes.
#
#SBATCH --job-name=nas-search
#SBATCH --nodes=3
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --gpus-per-task=1
#SBATCH --mem=64G
#SBATCH --time=24:00:00
#SBATCH --output=nas-search-%j.out
#SBATCH --signal=B:TERM@180

set -euo pipefail

# ---- settings (environment overrides) --------------------------------------------------------
NAS_VENV=${NAS_VENV:-$HOME/venvs/nas}
NAS_DATASET=${NAS_DATASET:-cifar10}
NAS_DATA_ROOT=${NAS_DATA_ROOT:-$HOME/nas-data}
NAS_RUN_DIR=${NAS_RUN_DIR:-${SLURM_SUBMIT_DIR:-$PWD}/runs/evolution-$NAS_DATASET}
# Where trials write their checkpoints (weights, trainer state) through Ray Tune: a directory every
# node mounts at the same path (home / project storage), or a bucket URI (s3://..., gs://...).
NAS_STORAGE=${NAS_STORAGE:-$NAS_RUN_DIR/storage}
NAS_TRIALS=${NAS_TRIALS:-200}
NAS_CPUS_PER_TRIAL=${NAS_CPUS_PER_TRIAL:-4}
NAS_GPUS_PER_TRIAL=${NAS_GPUS_PER_TRIAL:-1}
# 1: pass --download (fetch the dataset into NAS_DATA_ROOT if missing; needs internet on the first
# node). 0 on clusters without internet: put the files in NAS_DATA_ROOT beforehand.
NAS_DOWNLOAD=${NAS_DOWNLOAD:-1}
# Token files: a directory only you can read, visible from every node (home is typical).
NAS_RAY_TOKEN_DIR=${NAS_RAY_TOKEN_DIR:-$HOME/.nas-ray}
# On nodes shared with other Ray clusters pick free ports, e.g. RAY_PORT=$((20000 + SLURM_JOB_ID % 20000)).
# (The Ray client server, port 10001, only starts when ray[client] is installed; nas doesn't need it.)
RAY_PORT=${RAY_PORT:-6379}
RAY_DASHBOARD_PORT=${RAY_DASHBOARD_PORT:-8265}
RAY_VERSION_REQUIRED=2.60.0

die() { echo "slurm.sh: error: $*" >&2; exit 1; }

[ -n "${SLURM_JOB_ID:-}" ] || die "run this inside a Slurm allocation (sbatch launch/slurm.sh)"
ray_bin=$NAS_VENV/bin/ray
nas_bin=$NAS_VENV/bin/nas
python_bin=$NAS_VENV/bin/python
for exe in "$ray_bin" "$nas_bin" "$python_bin"; do
  [ -x "$exe" ] || die "$exe not found: set NAS_VENV to the virtualenv with nas and ray installed"
done
export PATH="$NAS_VENV/bin:$PATH"

ray_version=$("$python_bin" -c 'import ray; print(ray.__version__)')
[ "$ray_version" = "$RAY_VERSION_REQUIRED" ] ||
  die "ray $ray_version in $NAS_VENV, need $RAY_VERSION_REQUIRED: $NAS_VENV/bin/pip install \"ray[tune]==$RAY_VERSION_REQUIRED\""

# ---- resources per node ----------------------------------------------------------------------
cpus_per_node=${SLURM_CPUS_PER_TASK:-1}
# --gpus-per-task (as above), or the GPUs on the node for --gres=gpu:N style allocations.
gpus_per_node=${SLURM_GPUS_PER_TASK:-${SLURM_GPUS_ON_NODE:-0}}
gpus_per_node=${gpus_per_node##*:}   # "a100:1" -> "1"
gpu_opts=()
if [ "$gpus_per_node" -gt 0 ]; then
  gpu_opts=(--gpus-per-task="$gpus_per_node")
fi

mapfile -t nodes < <(scontrol show hostnames "${SLURM_JOB_NODELIST:?}")
num_nodes=${#nodes[@]}
head_node=${nodes[0]}

# The head's IPv4 address (not loopback: /etc/hosts often maps the hostname to 127.0.1.1).
# Several networks (Ethernet, IPoIB)? Set NAS_HEAD_IP to the one the nodes should use.
head_ip=${NAS_HEAD_IP:-}
if [ -z "$head_ip" ]; then
  for addr in $(srun --nodes=1 --ntasks=1 -w "$head_node" bash -c 'hostname --ip-address; hostname -I'); do
    if [[ $addr != *:* && $addr != 127.* ]]; then head_ip=$addr; break; fi
  done
fi
[ -n "$head_ip" ] || die "no IPv4 address found for $head_node (set NAS_HEAD_IP)"
head_addr=$head_ip:$RAY_PORT

# ---- token auth ------------------------------------------------------------------------------
# A fresh token per job, in a file only this user can read (same format as
# `ray get-auth-token --generate`: 32 random bytes, hex). Never printed.
mkdir -p "$NAS_RAY_TOKEN_DIR"
chmod 700 "$NAS_RAY_TOKEN_DIR"
token_file=$NAS_RAY_TOKEN_DIR/token.$SLURM_JOB_ID
(umask 077 && "$python_bin" -c 'import secrets; print(secrets.token_hex(32), end="")' >"$token_file")
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$token_file
unset RAY_AUTH_TOKEN   # would take precedence over the file
export RAY_USAGE_STATS_ENABLED=0

# Per-job Ray temp dir: keeps this cluster's sockets/logs apart from other jobs on the same node.
ray_tmp=${NAS_RAY_TMP:-/tmp/ray-$SLURM_JOB_ID}

# ---- cleanup: stop only the steps started here -----------------------------------------------
step_pids=()
nas_pid=""
join_pid=""
# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$join_pid" ]; then
    kill -KILL "$join_pid" 2>/dev/null || true   # the node-count probe
  fi
  if [ -n "$nas_pid" ] && kill -0 "$nas_pid" 2>/dev/null; then
    kill -INT "$nas_pid" 2>/dev/null || true   # let the driver journal what it has
    for _ in $(seq 60); do kill -0 "$nas_pid" 2>/dev/null || break; sleep 1; done
    kill -TERM "$nas_pid" 2>/dev/null || true
    for _ in $(seq 10); do kill -0 "$nas_pid" 2>/dev/null || break; sleep 1; done
    kill -KILL "$nas_pid" 2>/dev/null || true
  fi
  local pid
  # ${a[@]+"${a[@]}"}: empty arrays are fine under `set -u` on old bash too.
  for pid in ${step_pids[@]+"${step_pids[@]}"}; do
    kill -TERM "$pid" 2>/dev/null || true   # srun forwards it to the step; Slurm reaps the rest
  done
  for pid in ${step_pids[@]+"${step_pids[@]}"}; do
    for _ in $(seq 45); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done   # Ray drains up to 30 s
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -f "$token_file"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# ---- start Ray -------------------------------------------------------------------------------
echo "head node: $head_node ($head_addr); nodes: $num_nodes; per node: $cpus_per_node CPU, $gpus_per_node GPU"
srun --nodes=1 --ntasks=1 -w "$head_node" \
  --cpus-per-task="$cpus_per_node" ${gpu_opts[@]+"${gpu_opts[@]}"} \
  "$ray_bin" start --head --node-ip-address="$head_ip" --port="$RAY_PORT" \
  --dashboard-host=127.0.0.1 --dashboard-port="$RAY_DASHBOARD_PORT" \
  --num-cpus="$cpus_per_node" --num-gpus="$gpus_per_node" \
  --temp-dir="$ray_tmp" --disable-usage-stats --block &
step_pids+=("$!")

ready=0
for _ in $(seq 90); do
  if "$ray_bin" status --address="$head_addr" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "${step_pids[0]}" 2>/dev/null || die "the Ray head step exited (see the log above)"
  sleep 2
done
[ "$ready" = 1 ] || die "Ray head at $head_addr did not come up in 180 s"

if [ "$num_nodes" -gt 1 ]; then
  workers=$((num_nodes - 1))
  # One step, one task per remaining node. Each worker finds its own IP.
  srun --nodes="$workers" --ntasks="$workers" --ntasks-per-node=1 --exclude="$head_node" \
    --cpus-per-task="$cpus_per_node" ${gpu_opts[@]+"${gpu_opts[@]}"} \
    "$ray_bin" start --address="$head_addr" \
    --num-cpus="$cpus_per_node" --num-gpus="$gpus_per_node" \
    --temp-dir="$ray_tmp" --disable-usage-stats --block &
  step_pids+=("$!")
fi

# Wait (up to 5 min) for every node to join; the search also starts with fewer. Long waits run in
# the background + `wait`: bash runs a trap (TERM from scancel) only between commands.
NUM_NODES=$num_nodes HEAD_ADDR=$head_addr "$python_bin" - <<'PY' &
import os, sys, time
import ray
ray.init(address=os.environ["HEAD_ADDR"], logging_level="ERROR", log_to_driver=False)
want = int(os.environ["NUM_NODES"])
deadline = time.time() + 300
while True:
    alive = sum(1 for n in ray.nodes() if n["Alive"])
    if alive >= want:
        print(f"ray cluster ready: {alive} nodes, {ray.cluster_resources()}")
        sys.exit(0)
    if time.time() > deadline:
        print(f"ray cluster: {alive}/{want} nodes after 300 s", file=sys.stderr)
        sys.exit(1)
    time.sleep(5)
PY
join_pid=$!
wait "$join_pid" || echo "warning: not all nodes joined; starting anyway"
join_pid=""

echo "dashboard: ssh -N -L 8265:127.0.0.1:$RAY_DASHBOARD_PORT -J <login-node> $head_node"

# ---- the search ------------------------------------------------------------------------------
mkdir -p "$(dirname "$NAS_RUN_DIR")" "$NAS_DATA_ROOT"
case "$NAS_STORAGE" in *://*) ;; *) mkdir -p "$NAS_STORAGE" ;; esac
download_opt=()
if [ "$NAS_DOWNLOAD" = 1 ]; then
  download_opt=(--download)
fi
# In the background + wait, so a TERM (scancel, time limit) runs the trap right away. Background
# jobs of a non-interactive shell ignore SIGINT; `trap - INT` gives the driver its default SIGINT
# back, so the cleanup's SIGINT stops it gracefully: `nas search` stops dispatching, keeps the
# journal complete and exits 130; the trials that were running continue from their checkpoints
# when the job is resubmitted.
(
  trap - INT
  exec "$nas_bin" search --strategy evolution \
    --dataset "$NAS_DATASET" --data-root "$NAS_DATA_ROOT" ${download_opt[@]+"${download_opt[@]}"} \
    --cpus-per-trial "$NAS_CPUS_PER_TRIAL" --gpus-per-trial "$NAS_GPUS_PER_TRIAL" \
    --trials "$NAS_TRIALS" --run-dir "$NAS_RUN_DIR" --storage "$NAS_STORAGE" \
    --address "$head_addr" "$@"
) &
nas_pid=$!
set +e
wait "$nas_pid"
rc=$?
set -e
nas_pid=""
echo "nas search exited with $rc; run directory: $NAS_RUN_DIR"
exit "$rc"
