"""Real engines for the tests (Slurm, an SSH fleet), each started by its own ``start.sh``."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

# A start.sh exits with this when the machine cannot host its engine at all (not root, no
# CAP_NET_ADMIN/CAP_SYS_ADMIN): a reason to skip, unlike any other failure.
EXIT_NO_PRIVILEGES = 3


def run_start_script(script: Path, env: Mapping[str, str] | None, timeout: float) -> tuple[bool, bool, str]:
    """Run ``bash script``: ``(ok, unavailable, what went wrong)``, with the log's last lines."""
    try:
        proc = subprocess.run(
            ["bash", str(script)], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return False, False, f"{script.name} did not finish within {timeout}s"
    if proc.returncode == 0:
        return True, False, ""
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return (
        False,
        proc.returncode == EXIT_NO_PRIVILEGES,
        f"{script.name} failed (exit {proc.returncode}):\n{tail}",
    )
