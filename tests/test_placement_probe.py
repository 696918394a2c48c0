"""`neo reserve` contacts clusters lazily, in placement order: when a cheaper cluster fits, the
others' APIs are neither imported nor contacted (a Kubernetes cluster costs the `kubernetes`
import, ~1.7 s, and kubeconfig/TLS); `--explain` still probes every feasible cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import Neo

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:9"}
  name: c
contexts:
- context: {cluster: c, user: u, namespace: x}
  name: ctx
current-context: ctx
users:
- name: u
  user: {token: t}
"""

PROBE = """
import json, sys
from pathlib import Path
from jupyter_neo.client import Client
from jupyter_neo.config import load_config
client = Client(load_config(Path(sys.argv[1]), Path(sys.argv[2])))
res = client.reserve(gpus=1)
print(json.dumps({"cluster": res.cluster, "kubernetes": "kubernetes" in sys.modules}))
client.release(res.id)
client.close()
"""


def test_a_cheaper_local_cluster_wins_without_touching_kubernetes(neo: Neo, tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    neo.write_config(
        "clusters:\n"
        "  - {name: here, nodes: 1, gpus_per_node: 2, price_per_gpu_hour: 1.0}\n"
        "  - name: far\n    backend: kubernetes\n    nodes: 2\n    gpus_per_node: 8\n"
        f"    price_per_gpu_hour: 5.0\n    options: {{kubeconfig: {tmp_path / 'kubeconfig'}, namespace: x}}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(neo.config), str(neo.home)],
        env=neo.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"cluster": "here", "kubernetes": False}


def test_explain_probes_every_cluster_and_a_full_one_falls_over(neo: Neo) -> None:
    neo.write_config(
        "clusters:\n"
        "  - {name: here, nodes: 1, gpus_per_node: 2, price_per_gpu_hour: 1.0}\n"
        "  - {name: there, nodes: 2, gpus_per_node: 4, price_per_gpu_hour: 3.0}\n"
    )
    client = neo.client()
    held = client.reserve(gpus=2, cluster="here")
    cands = {c.cluster.name: c.free_gpus for c in client.explain(gpus=2)}
    assert cands == {"here": 0, "there": 8}
    res = client.reserve(gpus=2)  # "here" is full: allocation there fails, the next cluster wins
    assert res.cluster == "there"
    client.release(res.id)
    client.release(held.id)
    client.close()
