"""Peak memory of a sync of one large file: the controller's and the agent's, from the kernel.

    python -m bench.sync_memory [--mb 600] [--pods 1]

Writes one file of ``--mb`` million bytes (a random MiB repeated: incompressible), reserves a
local gang, and runs ``neo sync`` as a child process. The controller's peak RSS is the child's
``ru_maxrss``; each agent's is its ``VmHWM`` before and after. Large files are streamed in
bounded chunks (docs/sync.md), so neither number should grow with the file.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 2**20
CHILD = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print('RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(r.returncode)"
)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=600, help="file size in millions of bytes")
    ap.add_argument("--pods", type=int, default=1)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="neo-bench-memory-"))
    os.environ["NEO_HOME"] = str(tmp / "home")
    os.environ["NEO_SYNC_MAX_FILE_MB"] = str(args.mb * 2)
    from jupyter_neo.client import Client

    client = Client()
    res = client.reserve(gpus=8 * args.pods, nodes=args.pods)
    try:
        ws = tmp / "ws"
        ws.mkdir()
        block = random.Random(3).randbytes(MiB)
        with open(ws / "weights.bin", "wb") as f:
            left = args.mb * 10**6
            while left:
                f.write(block[: min(left, MiB)])
                left -= min(left, MiB)
        agents = [int((Path(p.handle.dir) / "agent" / "agent.pid").read_text()) for p in res.pods]
        before = [peak_rss_mib(pid) for pid in agents]
        t0 = time.perf_counter()
        argv = [sys.executable, "-c", CHILD, sys.executable, "-m", "jupyter_neo.cli.main"]
        proc = subprocess.run(
            [*argv, "sync", res.id, "--path", str(ws)], capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - t0
        rss = next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("RSS_KIB"))
        after = [peak_rss_mib(pid) for pid in agents]
        print(
            "| file | pods | exit | seconds | controller peak RSS MiB | agent peak RSS MiB (before -> after) |"
        )
        print("|---|---|---|---|---|---|")
        agent_col = ", ".join(f"{b:.0f} -> {a:.0f}" for b, a in zip(before, after, strict=True))
        print(
            f"| {args.mb} MB | {args.pods} | {proc.returncode} | {seconds:.1f} | {rss / 1024:.0f} | {agent_col} |"
        )
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
    finally:
        client.release(res.id)
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
