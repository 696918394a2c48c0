"""The exact argv and environment each node's launcher gets (no shell anywhere)."""

from __future__ import annotations

from dataclasses import dataclass

from jupyter_neo.model import Reservation
from jupyter_neo.runs.spec import DEFAULT_ENV, RunSpec

# The all-reduce probe of ``neo check``: fixed code (never user input), run by torchrun on every rank.
CHECK_CODE = r"""
import json, os, time, torch, torch.distributed as dist
cuda = torch.cuda.is_available()
dist.init_process_group("nccl" if cuda else "gloo")
rank, world = dist.get_rank(), dist.get_world_size()
dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
if cuda:
    torch.cuda.set_device(dev)
sizes = [int(s) for s in os.environ.get("NEO_CHECK_SIZES", "4096,65536,1048576,16777216").split(",")]
for size in sizes:
    t = torch.ones(size // 4, dtype=torch.float32, device=dev)
    for _ in range(2):
        dist.all_reduce(t)
    if cuda:
        torch.cuda.synchronize()
    iters = max(2, min(50, int(2e8 // max(size, 1))))
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(t)
    if cuda:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / iters
    algbw = size / dt / 1e9
    busbw = algbw * 2 * (world - 1) / world
    print("NEO_CHECK " + json.dumps({"rank": rank, "node": int(os.environ.get("GROUP_RANK", 0)), "bytes": size,
          "seconds": dt, "algbw_gbps": algbw, "busbw_gbps": busbw, "backend": dist.get_backend()}), flush=True)
dist.barrier()
dist.destroy_process_group()
os._exit(0)
"""


@dataclass(frozen=True)
class NodeLaunch:
    """Where one node's launcher starts and how it finds the others."""

    node: int
    nproc: int
    master: str
    port: int
    python: str
    log_dir: str
    agent_zip: str
    hot_control: str | None = None


def node_argv(spec: RunSpec, res: Reservation, at: NodeLaunch) -> list[str]:
    """torchrun on one node; each rank runs through the agent's ``rank`` entry (see neo_agent.rank)."""
    if spec.launcher == "plain":
        return spec.command()
    argv = [
        at.python, "-m", "torch.distributed.run",
        "--nnodes", str(res.nodes), "--nproc-per-node", str(at.nproc), "--node-rank", str(at.node),
        "--master-addr", at.master, "--master-port", str(at.port),
        "--max-restarts", "0", "--tee", "3", "--log-dir", at.log_dir,
    ]  # fmt: skip
    hot = ["--hot"] if at.hot_control else []
    if spec.kind in ("script", "module"):
        return [*argv, "--no-python", at.python, at.agent_zip, "rank", *hot, *entry_argv(spec)]
    return [*argv, "--no-python", at.python, "-c", CHECK_CODE]


def entry_argv(spec: RunSpec) -> list[str]:
    """What the rank entry runs: ``SCRIPT ARGS...`` or ``-m MODULE ARGS...``.

    Hot workers also receive it with each new generation, so a different script or arguments
    reuse the warm workers (only the world shape and environment are fixed at launch).
    """
    if spec.kind == "module":
        return ["-m", spec.target, *spec.args]
    return [spec.target, *spec.args]


def run_env(spec: RunSpec, res: Reservation, at: NodeLaunch, run_id: str) -> dict[str, str]:
    env = dict(DEFAULT_ENV)
    env.update(
        NEO_RUN=run_id,
        NEO_NNODES=str(res.nodes),
        MASTER_ADDR=at.master,
        MASTER_PORT=str(at.port),
        NEO_NODE_RANK=str(at.node),
    )
    if at.hot_control:
        env["NEO_HOT_CONTROL"] = at.hot_control
    if spec.launcher == "torchrun" and "OMP_NUM_THREADS" not in spec.env:
        env["OMP_NUM_THREADS"] = "1"
    env.update(spec.env)
    return env
