"""A dataset on Slurm is a path on the nodes: every rank of a real 2-node Slurm gang finds it at
``NEO_DATA_<NAME>`` (the nodes are network namespaces of this machine sharing its file system, as
a cluster shares a parallel file system). Needs root (skips otherwise; fails under CI=true)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo
from tests.engines.slurm.harness import SlurmCluster
from tests.test_slurm_run import node_of

pytest_plugins = ["tests.engines.slurm.conftest_fixture", "tests.slurm_fixture"]
pytestmark = pytest.mark.timeout(180)


def test_ranks_on_two_slurm_nodes_read_the_dataset_at_its_node_path(
    sneo: Neo, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    data = tmp_path / "shared" / "corpus"
    data.mkdir(parents=True)
    (data / "shard-0.txt").write_text("corpus shard 0\n")
    with sneo.config.open("a") as f:
        f.write(
            f"datasets:\n  - {{name: corpus, size: 1TB, locations: [{{cluster: slurm-test, path: {data}}}]}}\n"
        )
    ws = tmp_path / "ws"
    ws.mkdir()
    res: Any = sneo.json("reserve", "--gpus", "4", "--nodes", "2", "--data", "corpus")
    assert res["datasets"][0]["path"] == str(data), "on Slurm the path on the nodes is the path"
    show = "sh -c 'echo $(hostname) $NEO_DATA_CORPUS $(cat $NEO_DATA_CORPUS/shard-0.txt)'"
    proc = sneo.run("run", "-r", res["id"], "--ranks", "all", "--cmd", show, cwd=ws)
    assert proc.returncode == 0, proc.stderr
    nodes = [node_of(slurm_cluster, p["address"]) for p in res["pods"]]
    assert sorted(proc.stdout.splitlines()) == [
        f"[node 0 rank 0] {nodes[0]} {data} corpus shard 0",
        f"[node 1 rank 1] {nodes[1]} {data} corpus shard 0",
    ]
    sneo.run("release", "--all", check=True)
    assert (data / "shard-0.txt").exists()
