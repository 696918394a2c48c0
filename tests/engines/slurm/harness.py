"""Python face of the in-repo Slurm test cluster (``start.sh`` / ``stop.sh`` next to this file).

Why it exists: tests of the Slurm backend need a *real* slurmctld + several slurmd "nodes" with
GPUs, and must not depend on anything outside this repository. ``start.sh`` builds such a cluster
on one Debian machine (each node is a network + UTS + mount namespace with fake GPUs); this module
runs it, reads back what it built (``$SLURM_RUN/cluster.env``) and hands tests a
:class:`SlurmCluster` that knows the environment every Slurm client command needs
(``SLURM_CONF`` points at a config outside ``/etc/slurm``, so forgetting it talks to no cluster).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.engines import run_start_script

HERE = Path(__file__).resolve().parent
START_SH = HERE / "start.sh"
STOP_SH = HERE / "stop.sh"
SMOKE_SH = HERE / "smoke.sh"
DEFAULT_RUN = "/var/tmp/jupyter-neo-slurm"


_GRANTED_RE = re.compile(r"Granted job allocation (\d+)")


class SlurmHarnessError(RuntimeError):
    """The test cluster could not be started or stopped.

    ``unavailable`` is True when the machine cannot host it (not root, no namespaces), so callers
    can tell "cannot run here" from "broken".
    """

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


@dataclass(frozen=True)
class SlurmCluster:
    """What a test needs to use the running cluster.

    ``env`` holds only the variables the harness sets (``SLURM_CONF``); use :meth:`environ` for a
    complete environment for subprocesses, which also drops inherited job variables
    (``SLURM_JOB_ID``...) so a test run inside a real Slurm job cannot target the wrong cluster.
    """

    conf: Path
    partition: str
    nodes: tuple[str, ...]
    node_addrs: Mapping[str, str]
    gpus_per_node: int
    controller_host: str
    controller_addr: str
    run_dir: Path
    netns_prefix: str
    env: Mapping[str, str] = field(default_factory=dict)

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Full environment for Slurm client commands: ours, minus stray ``SLURM_*``, plus ``env``."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SALLOC_", "SBATCH_"))}
        base.update(self.env)
        if extra:
            base.update(extra)
        return base

    def netns(self, node: str) -> str:
        """Name of ``node``'s network namespace (for ``ip netns pids``/``nsenter``) - debugging aid."""
        return f"{self.netns_prefix}{self.nodes.index(node) + 1}"

    def nsenter_argv(self, node: str) -> list[str]:
        """Command prefix that runs a process "on" ``node`` outside Slurm (as ssh to it would).

        It joins the node slurmd's network, UTS and mount namespaces, so the process gets the
        node's hostname, address and /etc/hosts. ``ip netns exec`` is NOT equivalent: it keeps
        the host's hostname and remounts /sys.
        """
        pid = (self.run_dir / "run" / f"slurmd-{node}.pid").read_text().strip()
        return ["nsenter", "-t", pid, "--net", "--uts", "--mount", "--"]

    def run(
        self, *argv: str, timeout: float = 30.0, check: bool = False, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (``sinfo``, ``srun``...) against this cluster, capturing text."""
        return subprocess.run(
            list(argv), env=self.environ(env), capture_output=True, text=True, timeout=timeout, check=check
        )

    def salloc(self, *args: str, timeout: float = 30.0) -> int:
        """``salloc --no-shell ARGS`` and return the granted job id; raises if not granted.

        ``--no-shell`` is how a backend reserves a gang without holding a process open: the job
        stays RUNNING until ``scancel`` and steps are launched with ``srun --jobid``.
        """
        proc = self.run("salloc", "--no-shell", *args, timeout=timeout)
        m = _GRANTED_RE.search(proc.stderr + proc.stdout)
        if proc.returncode != 0 or m is None:
            raise RuntimeError(f"salloc {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return int(m.group(1))

    def idle_nodes(self) -> list[str]:
        """Nodes currently idle (responding, nothing allocated)."""
        out = self.run("sinfo", "-h", "-N", "-t", "idle", "-o", "%N", check=True).stdout
        return sorted(set(out.split()))

    def hostnames(self, nodelist: str) -> list[str]:
        """Expand a Slurm nodelist expression (``n[1-2]``) the way the backend must."""
        return self.run("scontrol", "show", "hostnames", nodelist, check=True).stdout.split()

    def wait_all_idle(self, timeout: float = 15.0) -> None:
        """Block until every node is idle again, so one test's jobs cannot skew the next one's."""
        deadline = time.monotonic() + timeout
        while True:
            idle = self.idle_nodes()
            if len(idle) == len(self.nodes):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes not idle after {timeout}s: idle={idle}")
            time.sleep(0.1)


def _run_dir() -> Path:
    return Path(os.environ.get("SLURM_RUN", DEFAULT_RUN))


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def _pid_alive(pidfile: Path, comm: str) -> bool:
    """True if ``pidfile`` names a live (non-zombie) process called ``comm``."""
    try:
        pid = int(pidfile.read_text().strip())
        proc = Path(f"/proc/{pid}")
        if proc.joinpath("comm").read_text().strip() != comm:
            return False
        state = next(ln for ln in proc.joinpath("status").read_text().splitlines() if ln.startswith("State:"))
    except (OSError, ValueError, StopIteration):
        return False
    return "Z" not in state.split()[1]


def cluster_running() -> bool:
    """Whether a cluster from ``start.sh`` seems to be up (its slurmctld is alive)."""
    return _pid_alive(_run_dir() / "run" / "slurmctld.pid", "slurmctld")


def load_cluster() -> SlurmCluster:
    """Describe the cluster ``start.sh`` last configured, from ``$SLURM_RUN/cluster.env``."""
    run_dir = _run_dir()
    values = _read_env_file(run_dir / "cluster.env")
    nodes = tuple(values["SLURM_NODE_NAMES"].split(","))
    addrs = values["SLURM_NODE_ADDRS"].split(",")
    return SlurmCluster(
        conf=Path(values["SLURM_CONF"]),
        partition=values["SLURM_PARTITION"],
        nodes=nodes,
        node_addrs=dict(zip(nodes, addrs, strict=True)),
        gpus_per_node=int(values["SLURM_FAKE_GPUS"]),
        controller_host=values["SLURM_CTLD_HOST"],
        controller_addr=values["SLURM_CTLD_ADDR"],
        run_dir=run_dir,
        netns_prefix=values["SLURM_NS_PREFIX"],
        env={"SLURM_CONF": values["SLURM_CONF"]},
    )


def _script_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def ensure_slurm_cluster(
    nodes: int = 4,
    gpus_per_node: int = 8,
    *,
    timeout: float = 600.0,
    extra_env: Mapping[str, str] | None = None,
) -> SlurmCluster:
    """Start the cluster if needed (idempotent, ~0.3 s when up; first time installs Slurm via apt).

    Raises :class:`SlurmHarnessError` with ``start.sh``'s log in the message; ``unavailable`` is
    set when the machine cannot host it at all. ``timeout`` covers a first-time ``apt-get``.
    """
    if os.geteuid() != 0:
        raise SlurmHarnessError(
            "the Slurm test cluster needs root (network namespaces, daemons)", unavailable=True
        )
    env = _script_env({"SLURM_NODES": str(nodes), "FAKE_GPUS": str(gpus_per_node), **(extra_env or {})})
    ok, unavailable, problem = run_start_script(START_SH, env, timeout)
    if not ok:
        raise SlurmHarnessError(problem, unavailable=unavailable)
    return load_cluster()


def stop_slurm_cluster(*, purge: bool = False, keep_net: bool = False, timeout: float = 120.0) -> None:
    """Stop everything ``start.sh`` started, by PID (``stop.sh``); ``purge`` also deletes state and logs."""
    args: Sequence[str] = [*(["--purge"] if purge else []), *(["--keep-net"] if keep_net else [])]
    proc = subprocess.run(
        ["bash", str(STOP_SH), *args],
        env=_script_env({}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise SlurmHarnessError(f"stop.sh failed (exit {proc.returncode}): {proc.stderr.strip()}")
