"""The quick start on the embedded local backend: the whole edit-run loop, no cluster needed.

``make demo`` runs this: the very ``neo`` commands a user types, so the resident controller is
started by the first one and used by every other (warm agent connections, a change tracker for
the workspace) without any step of its own. Reserve a 2-node x 2-GPU gang (all or nothing), run
the DDP example with torchrun on both nodes, edit a hyper-parameter, run again on the same warm
gang, then twice with ``--hot`` (the second time in the same warm rank processes), show the
controller, release, print the timings.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

console = Console(highlight=False)
HERE = Path(__file__).resolve().parent
NEO = str(Path(sys.executable).with_name("neo"))
SHOWN = ("first step", "final loss", "Error")


def neo(*args: str, cwd: Path | None = None, quiet: bool = False) -> tuple[int, str, float]:
    """Run one ``neo`` command as a user would; print its command line, progress and chosen lines."""
    console.print(f"[bold]$ neo {escape(' '.join(args))}[/bold]")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [NEO, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    out = []
    for line in proc.stdout:
        out.append(line)
        if not quiet and (not line.startswith("[node") or any(s in line for s in SHOWN)):
            console.print(f"  {escape(line.rstrip())}")
    code = proc.wait()
    return code, "".join(out), time.perf_counter() - t0


def lr(script: Path, value: str) -> None:
    script.write_text(
        re.sub(
            r'"--lr", type=float, default=[0-9.]+', f'"--lr", type=float, default={value}', script.read_text()
        )
    )


def main() -> None:
    workspace = Path(tempfile.mkdtemp(prefix="neo-demo-"))
    script = workspace / "train_ddp.py"
    shutil.copy(HERE / "train_ddp.py", script)
    timings: list[tuple[str, float]] = []
    console.rule("clusters")
    neo("clusters")
    console.rule("reserve 2 nodes x 2 GPUs as one gang")
    code, _, wall = neo("reserve", "--gpus", "4", "--nodes", "2", "--idle-ttl", "10m", "--name", "demo")
    if code:
        raise SystemExit(code)
    timings.append(("reserve", wall))
    neo("status")
    try:
        runs = [("run 1 (lr=0.05)", "0.05", False), ("run 2 (lr=0.01)", "0.01", False)]
        runs += [("hot 1 (lr=0.02)", "0.02", True), ("hot 2 (lr=0.03)", "0.03", True)]
        for i, (name, value, hot) in enumerate(runs):
            if i:
                console.rule(f"edit: lr -> {value} (the workspace file changes; the gang stays warm)")
            lr(script, value)
            if hot and name.startswith("hot 1"):
                console.rule("hot reload: the ranks stay warm, only the code changes")
            flags = ["--hot"] if hot else []
            code, _, wall = neo(
                "run", "-r", "demo", *flags, "--ranks", "all", "train_ddp.py", "--steps", "10", cwd=workspace
            )
            if code:
                raise SystemExit(code)
            timings.append((name, wall))
        console.rule("the resident controller the commands above shared")
        neo("daemon", "status")
    finally:
        console.rule("release")
        neo("release", "demo")
        neo("daemon", "stop", quiet=True)
    console.rule("timings (neo command wall time, process start included)")
    for name, wall in timings:
        console.print(f"  {name:18} {wall:6.2f}s")
    shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    main()
