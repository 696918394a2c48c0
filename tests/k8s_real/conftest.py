"""The real two-node Kubernetes for this package only (see tests/engines/kubernetes/conftest_fixture.py)."""

from __future__ import annotations

import pytest

from tests.engines.kubernetes.conftest_fixture import running_cluster

kube_cluster = pytest.fixture(scope="package", name="kube_cluster")(running_cluster)
