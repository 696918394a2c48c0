"""Helpers of the Slurm backend's tests: the cluster file for the test cluster, and probes.

The ``sneo`` fixture is in ``tests/slurm_fixture.py`` (a plugin: a module both imported and loaded
as a plugin could not have its asserts rewritten). Pods run ``sys.executable`` on the nodes (the
nodes share this machine's filesystem), so runs find the test environment's torch there.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from jupyter_neo.backends.slurm.backend import job_prefix
from tests.conftest import Neo
from tests.engines.slurm.harness import SlurmCluster


def slurm_config(cluster: SlurmCluster, pod_base: Path, **changes: str | None) -> str:
    """A cluster file with one ``backend: slurm`` entry for the test cluster.

    ``changes`` add or replace options (``None`` drops one), so bad-config tests differ in one key.
    """
    options: dict[str, str | None] = {
        "partition": cluster.partition,
        "time_limit": "10",
        "base_dir": str(pod_base),
        "env": f"{{SLURM_CONF: {cluster.conf}}}",
        "python": sys.executable,
    }
    options.update(changes)
    lines = "".join(f"      {k}: {v}\n" for k, v in options.items() if v is not None)
    return (
        "clusters:\n"
        "  - name: slurm-test\n"
        "    backend: slurm\n"
        f"    nodes: {len(cluster.nodes)}\n"
        f"    gpus_per_node: {cluster.gpus_per_node}\n"
        "    options:\n"
        f"{lines}"
    )


def neo_jobs(cluster: SlurmCluster, neo: Neo) -> list[tuple[str, str]]:
    """(job id, name) of every job in the queue that ``neo``'s state store submitted.

    Only this sandbox's: other test sessions may share the test cluster.
    """
    prefix = job_prefix(neo.home / "state.sqlite")
    out = cluster.run("squeue", "-h", "-o", "%i %j", check=True).stdout
    rows = [tuple(line.split(maxsplit=1)) for line in out.splitlines() if line.strip()]
    return [(r[0], r[1]) for r in rows if len(r) == 2 and r[1].startswith(prefix)]


def live_procs_mentioning(needle: str) -> list[str]:
    """Non-zombie processes whose argv mentions ``needle`` (zombies are gone: PID 1 reaps lazily)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(needle in part for part in proc.info["cmdline"] or []):
                found.append(f"{proc.pid} {' '.join(proc.info['cmdline'])[:160]}")
        except psutil.Error:
            continue
    return found


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
