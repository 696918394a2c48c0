"""Python face of the in-repo SSH test fleet (``start.sh`` / ``stop.sh`` next to this file).

Real sshd "hosts" gpu1, gpu2, gpu3 (behind the jump host) each in its own network, UTS and mount
namespace, with their own GPU lease directory; a generated key, known_hosts and ssh_config with
Host aliases (see start.sh). Tests reach them exactly as a user would: ``ssh -F ssh_config gpu1``.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.engines import run_start_script

HERE = Path(__file__).resolve().parent
DEFAULT_RUN = "/var/tmp/neossh"
GPU_HOSTS = ("gpu1", "gpu2", "gpu3")


class SshFleetError(RuntimeError):
    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


@dataclass(frozen=True)
class SshFleet:
    run_dir: Path

    @property
    def ssh_config(self) -> Path:
        return self.run_dir / "client" / "ssh_config"

    def lease_dir(self, host: str) -> Path:
        """Where ``host``'s leases are on this machine (bind-mounted at the default path there)."""
        return self.run_dir / host / "gpus"

    def leases(self, host: str) -> dict[int, dict[str, Any]]:
        """``host``'s lease files by slot, read directly (not through the code under test).

        Read without the host's lock, so a lease given back between the listing and the read is
        simply gone (files are replaced by rename, so one that is read is whole)."""
        out = {}
        for path in self.lease_dir(host).glob("gpu*.lease"):
            try:
                out[int(path.name[3:-6])] = json.loads(path.read_text())
            except FileNotFoundError:
                continue
        return out

    def all_leases(self) -> dict[str, dict[int, dict[str, Any]]]:
        return {h: self.leases(h) for h in (*GPU_HOSTS, "gpu1-fewgpus", "gpu2-nopython")}

    def veth(self, host: str) -> str:
        """The root-namespace end of ``host``'s link: set it down and the host is gone."""
        return f"nsh-{host}0"

    def link(self, host: str, up: bool) -> None:
        subprocess.run(["ip", "link", "set", self.veth(host), "up" if up else "down"], check=True)

    def ssh(self, host: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", host, "--", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def fleet_running(run_dir: Path | None = None) -> bool:
    run = run_dir or Path(os.environ.get("NEOSSH_RUN", DEFAULT_RUN))
    pidfile = run / "gpu1" / "sshd.pid"
    try:
        pid = int(pidfile.read_text())
        return Path(f"/proc/{pid}/comm").read_text().strip() == "sshd"
    except (OSError, ValueError):
        return False


def ensure_ssh_fleet(timeout: float = 300.0) -> SshFleet:
    """Start the fleet if needed (idempotent; the first time may apt-get install openssh-server)."""
    if os.geteuid() != 0:
        raise SshFleetError("the SSH test fleet needs root (network namespaces, sshd)", unavailable=True)
    ok, unavailable, problem = run_start_script(HERE / "start.sh", None, timeout)
    if not ok:
        raise SshFleetError(problem, unavailable=unavailable)
    return SshFleet(Path(os.environ.get("NEOSSH_RUN", DEFAULT_RUN)))


def stop_ssh_fleet(purge: bool = False) -> None:
    subprocess.run(
        ["bash", str(HERE / "stop.sh"), *(["--purge"] if purge else [])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
