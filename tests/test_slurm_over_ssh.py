"""The Slurm backend reaching its cluster through SSH to a login node (``options.login``).

A real sshd on loopback plays the login node (Debian's openssh-server, installed on first use
like the Slurm harness installs Slurm); every Slurm command, the detached keeper step and the pod
streams then go ``ssh login -- srun ...``. Needs root; skips otherwise, fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo, use_config
from tests.engines.slurm.harness import SlurmCluster
from tests.slurm_support import live_procs_mentioning, neo_jobs, slurm_config, wait_for

pytest_plugins = ["tests.engines.slurm.conftest_fixture"]

pytestmark = pytest.mark.timeout(180)

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def login_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """An sshd on 127.0.0.1 accepting a fresh key for root; yields the ssh options to reach it."""
    from tests.engines.slurm.conftest_fixture import _unavailable  # skip here, fail in CI

    if os.geteuid() != 0:
        _unavailable("an sshd login node needs root")
    if not Path(SSHD).exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-qq"]
        subprocess.run(
            [*apt, "install", "-y", "--no-install-recommends", "openssh-server"], env=env, check=False
        )
        if not Path(SSHD).exists():
            subprocess.run([*apt, "update"], env=env, check=False)
            subprocess.run(
                [*apt, "install", "-y", "--no-install-recommends", "openssh-server"], env=env, check=False
            )
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        _unavailable("openssh-server could not be installed")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "StrictModes no\nUsePAM no\nMaxStartups 100\nMaxSessions 100\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    options = [
        "-p", str(port), "-i", str(d / "client"), "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            ok = subprocess.run(
                ["ssh", "-o", "BatchMode=yes", *options, "root@127.0.0.1", "true"], check=False
            )
            if ok.returncode == 0:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                _unavailable(f"sshd did not accept the test key (exit {proc.poll()})")
            time.sleep(0.2)
        yield options
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_reserve_ping_release_through_a_login_node(
    neo: Neo, slurm_cluster: SlurmCluster, login_node: list[str], tmp_path: Path
) -> None:
    ssh_options = "[" + ", ".join(f"'{o}'" for o in login_node) + "]"
    use_config(
        neo,
        slurm_config(slurm_cluster, tmp_path / "nodes", login="root@127.0.0.1", ssh_options=ssh_options),
    )
    # nothing Slurm-related in the controller's own environment: it all goes through ssh
    neo.env.pop("SLURM_CONF", None)
    try:
        clusters: Any = neo.json("clusters")
        assert clusters[0]["free_gpus"] == len(slurm_cluster.nodes) * slurm_cluster.gpus_per_node
        res: Any = neo.json("reserve", "--gpus", "4", "--nodes", "2")
        assert res["state"] == "ready"
        assert [p["address"] for p in res["pods"]] == [
            slurm_cluster.node_addrs[n] for n in slurm_cluster.hostnames(_nodelist(slurm_cluster, neo))
        ]
        pings: Any = neo.json("ping", res["id"])
        assert len(pings) == 2
        neo.run("release", res["id"], check=True)
        assert neo_jobs(slurm_cluster, neo) == []
        wait_for(lambda: not live_procs_mentioning(str(tmp_path / "nodes")), 10, "agents to exit")
    finally:
        ids = [job for job, _ in neo_jobs(slurm_cluster, neo)]
        if ids:
            slurm_cluster.run("scancel", *ids)
        slurm_cluster.wait_all_idle(timeout=20)


def _nodelist(cluster: SlurmCluster, neo: Neo) -> str:
    (job, _name), *_ = neo_jobs(cluster, neo)
    return cluster.run("squeue", "-h", "-j", job, "-o", "%N").stdout.strip()
