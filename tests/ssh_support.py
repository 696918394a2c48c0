"""Helpers of the SSH backend's tests: a cluster file for the test fleet, and what is left behind.

Pods run the test venv's python on the hosts (they share this machine's filesystem), so runs find
torch there; ``python`` may be overridden (the no-python3 host uses the default ``python3``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import Neo, use_config
from tests.engines.ssh.harness import SshFleet
from tests.slurm_support import live_procs_mentioning


def fleet_yaml(
    fleet: SshFleet,
    pods: Path,
    hosts: list[str] | str,
    *,
    name: str = "fleet",
    price: float = 2.0,
    gpus_per_node: int = 8,
    **options: str,
) -> str:
    """One ``backend: ssh`` cluster entry (indented for a ``clusters:`` list)."""
    opts = {
        "ssh_config": str(fleet.ssh_config),
        "python": sys.executable,
        "base_dir": str(pods),
        "lease_ttl": "10s",
        "connect_timeout": "4s",
        **options,
    }
    host_list = hosts if isinstance(hosts, str) else "[" + ", ".join(hosts) + "]"
    lines = "".join(f"      {k}: {v}\n" for k, v in opts.items())
    return (
        f"  - name: {name}\n"
        "    backend: ssh\n"
        "    gpu_type: H100\n"
        f"    gpus_per_node: {gpus_per_node}\n"
        f"    price_per_gpu_hour: {price}\n"
        "    options:\n"
        f"      hosts: {host_list}\n"
        f"{lines}"
    )


def use_fleet(neo: Neo, fleet: SshFleet, pods: Path, hosts: list[str] | str, **options: str) -> None:
    use_config(neo, "clusters:\n" + fleet_yaml(fleet, pods, hosts, **options))


def held_by(fleet: SshFleet, rid: str) -> dict[str, list[int]]:
    """Slots per host whose lease file names ``rid``."""
    out: dict[str, list[int]] = {}
    for host, leases in fleet.all_leases().items():
        slots = sorted(s for s, lease in leases.items() if lease["reservation"] == rid)
        if slots:
            out[host] = slots
    return out


def assert_nothing_left(fleet: SshFleet, pods: Path) -> None:
    """No lease file on any host, no pod process, no pod directory: a clean release."""
    leases = {h: sorted(v) for h, v in fleet.all_leases().items() if v}
    assert not leases, f"lease files left: {leases}"
    procs = live_procs_mentioning(str(pods))
    assert not procs, f"pod processes left: {procs}"
    left = [p.name for p in pods.glob("r-*")] if pods.exists() else []
    assert not left, f"pod directories left: {left}"
