"""The official ``kubernetes`` client costs ~1.7 s to import on a 2-core machine; commands that
touch no Kubernetes cluster must not pay it (issue #16). Checked with ``python -X importtime``
on the real CLI, so a stray top-level import anywhere on the path is caught."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import NEO, Neo, use_config


def imported(neo: Neo, *args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *NEO[1:], *args],
        env=neo.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }


LOCAL = "clusters:\n  - name: laptop\n    backend: local\n    nodes: 1\n    gpus_per_node: 2\n"
KUBE = "  - name: kube\n    backend: kubernetes\n    nodes: 1\n    gpus_per_node: 8\n    price_per_gpu_hour: 5.0\n    options: {kubeconfig: /nonexistent}\n"


@pytest.mark.parametrize(
    ("args", "config"),
    [(("--help",), LOCAL + KUBE), (("status",), LOCAL + KUBE), (("clusters",), LOCAL)],
)
def test_commands_on_the_local_backend_never_import_the_kubernetes_client(
    neo: Neo, args: tuple[str, ...], config: str
) -> None:
    use_config(neo, config)
    mods = imported(neo, *args)
    assert not {m for m in mods if m == "kubernetes" or m.startswith("kubernetes.")}
    assert "jupyter_neo" in mods


def test_the_client_is_imported_when_a_kubernetes_cluster_is_touched(neo: Neo) -> None:
    """The check above can fail: the same measurement sees the client when it is used."""
    use_config(
        neo,
        "clusters:\n  - name: kube\n    backend: kubernetes\n    nodes: 1\n    gpus_per_node: 8\n"
        "    options: {kubeconfig: /nonexistent, gang: none}\n",
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *NEO[1:], "reserve", "--gpus", "8"],
        env=dict(neo.env, NEO_CONTROLLER="off"),  # measure the process that touches the cluster
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "cannot load kubeconfig" in proc.stderr
    assert "| kubernetes\n" in proc.stderr or "| kubernetes" in proc.stderr
