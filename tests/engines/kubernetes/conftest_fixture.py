"""pytest fixture ``kube_cluster``: a real two-node Kubernetes v1.20.2, started once.

``tests/k8s_real/conftest.py`` uses it with package scope: the cluster starts before the first
real-cluster test and stops right after the last one, instead of idling (apiserver, two kubelets)
through the rest of the session. Load it elsewhere with
``pytest_plugins = ["tests.engines.kubernetes.conftest_fixture"]`` for a session-wide cluster.

Skip-or-fail as the Slurm harness: without root or without the built binaries the tests skip and
say why; under ``CI=true`` the machine is meant to host it, so they fail instead. The cluster is
started once per session (~45 s) and stopped at its end (~15 s), and the stop is verified: no
process, mount, network namespace, bridge, forwarding rule or cgroup of it may remain.
``NEO_K8S_KEEP=1`` leaves it running for reruns by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.engines.availability import unavailable
from tests.engines.kubernetes.harness import (
    KubeCluster,
    KubeHarnessError,
    already_running,
    leftovers,
    start_cluster,
    stop_cluster,
)


def running_cluster() -> Iterator[KubeCluster]:
    """Start, yield, stop and verify the stop left nothing (a generator for any fixture scope)."""
    keep = os.environ.get("NEO_K8S_KEEP") == "1"
    try:
        cluster: KubeCluster | None = (already_running() if keep else None) or start_cluster()
        problem = ""
    except KubeHarnessError as exc:
        cluster, problem = None, str(exc)
        if not exc.unavailable:
            stop_cluster()
            pytest.fail(problem, pytrace=False)
    if cluster is None:
        unavailable("real Kubernetes", problem)
    yield cluster
    if keep:
        return
    stop_cluster()
    left = leftovers()
    assert not left, f"the stopped cluster left: {left}"


kube_cluster = pytest.fixture(scope="session", name="kube_cluster")(running_cluster)
