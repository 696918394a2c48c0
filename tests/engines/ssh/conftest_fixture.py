"""pytest fixture ``ssh_fleet``: the real sshd test fleet for the whole session.

Load it with ``pytest_plugins = ["tests.engines.ssh.conftest_fixture"]``. Skips where the machine
cannot host it (not root, no namespaces), fails under ``CI=true``, like the Slurm fixture. The
fleet is a machine-wide resource: the session holds ``/tmp/neossh.lock`` while it uses it, and
stops it at the end (also when tests failed) unless it was already running or ``NEO_SSH_KEEP=1``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator

import pytest

from tests.engines.slurm.conftest_fixture import _unavailable
from tests.engines.ssh.harness import SshFleet, SshFleetError, ensure_ssh_fleet, fleet_running, stop_ssh_fleet

LOCK = "/tmp/neossh.lock"
FLEET = "SSH test fleet"


@pytest.fixture(scope="session")
def ssh_fleet() -> Iterator[SshFleet]:
    if os.name != "posix" or os.geteuid() != 0:
        _unavailable("needs root (network namespaces and sshd)", FLEET)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        was_running = fleet_running()
        try:
            fleet: SshFleet | None = ensure_ssh_fleet()
            problem = ""
        except SshFleetError as exc:
            fleet, problem = None, str(exc)
        if fleet is None:
            stop_ssh_fleet()
            _unavailable(problem, FLEET)
        try:
            yield fleet
        finally:
            if not was_running and os.environ.get("NEO_SSH_KEEP") != "1":
                stop_ssh_fleet()
