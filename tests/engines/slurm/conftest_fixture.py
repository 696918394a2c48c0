"""pytest fixture ``slurm_cluster``: a real 4-node x 8-GPU Slurm cluster for the whole session.

Load it with ``pytest_plugins = ["tests.engines.slurm.conftest_fixture"]`` in a test module (it is
not named ``conftest.py`` so that it is only loaded by the tests that want a cluster).

Why skip-or-fail: on a laptop without root, or in an unprivileged container, a Slurm test cannot
run and should say so (skip). In CI (``CI=true``) the machine is meant to host it, so a missing
cluster is a broken CI and must fail loudly instead of silently skipping the Slurm backend's tests.

Set ``NEO_SLURM_KEEP=1`` to leave the cluster running after the session (faster reruns); by default
the fixture stops it again if it was not already running when the session began.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from tests.engines.slurm.harness import (
    SlurmCluster,
    SlurmHarnessError,
    cluster_running,
    ensure_slurm_cluster,
    stop_slurm_cluster,
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str, what: str = "Slurm test cluster") -> NoReturn:
    """Skip outside CI, fail inside it: a CI machine that cannot run the engine is a CI bug."""
    if _in_ci():
        pytest.fail(f"{what} unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The running test cluster; started on first use, stopped at session end if we started it."""
    if os.name != "posix" or os.geteuid() != 0:
        _unavailable("needs root (network namespaces and Slurm daemons); run the tests as root")
    was_running = cluster_running()
    try:
        cluster: SlurmCluster | None = ensure_slurm_cluster(nodes=4, gpus_per_node=8)
        problem = ""
    except SlurmHarnessError as exc:
        cluster, problem = None, str(exc)
    if cluster is None:  # outside the except block, so the report shows no chained traceback
        _unavailable(problem)
    # jobs left by an interrupted earlier session would skew the gang tests: this cluster is ours
    cluster.run("scancel", "-p", cluster.partition)
    cluster.wait_all_idle(timeout=30)
    yield cluster
    if not was_running and os.environ.get("NEO_SLURM_KEEP") != "1":
        stop_slurm_cluster()
