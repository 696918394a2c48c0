"""pytest fixture ``sneo``: a sandboxed ``neo`` whose only cluster is the Slurm test cluster.

Load with ``pytest_plugins = ["tests.engines.slurm.conftest_fixture", "tests.slurm_fixture"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Neo, use_config
from tests.engines.slurm.harness import SlurmCluster
from tests.slurm_support import neo_jobs, slurm_config


@pytest.fixture
def sneo(neo: Neo, slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[Neo]:
    """A sandboxed ``neo`` whose only cluster is the Slurm test cluster.

    At teardown every job this sandbox named is cancelled, whatever the test did, so the next
    test's gang arithmetic starts from idle nodes.
    """
    use_config(neo, slurm_config(slurm_cluster, tmp_path / "nodes"))
    neo.env["SLURM_CONF"] = str(slurm_cluster.conf)
    yield neo
    ids = [job for job, _name in neo_jobs(slurm_cluster, neo)]
    if ids:
        slurm_cluster.run("scancel", *ids)
    slurm_cluster.wait_all_idle(timeout=20)
