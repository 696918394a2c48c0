"""Helpers for the tests against the real two-node Kubernetes (``tests/engines/kubernetes/``).

The pods run ``localhost/neo-python:v2`` (Debian + python3, imported into each node's containerd;
there is no registry, hence ``image_pull_policy: Never``). torch reaches them without an image
build: the test virtualenv and the interpreter it was made from are mounted read-only through
the ``volumes:`` cluster option, and ``options.python`` points at the venv's python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import Neo
from tests.engines.kubernetes.harness import GPUS_PER_NODE, IMAGE, KubeCluster

MANAGED = "app.kubernetes.io/managed-by=jupyter-neo"


def python_volumes() -> tuple[str, list[dict[str, Any]]]:
    """(python for the pods, volumes): this venv and its base interpreter, read-only, same paths."""
    venv, base = Path(sys.prefix), Path(sys.base_prefix)
    volumes: list[dict[str, Any]] = [
        {"name": "venv", "mount_path": str(venv), "read_only": True, "host_path": str(venv)}
    ]
    if base != venv and not str(base).startswith("/usr"):  # the image has its own /usr
        volumes.append({"name": "python", "mount_path": str(base), "read_only": True, "host_path": str(base)})
    return str(venv / "bin" / "python"), volumes


def cluster_entry(name: str, kubeconfig: Path, namespace: str, *, nodes: int = 2, **options: Any) -> str:
    """One ``backend: kubernetes`` cluster of neo.yaml (options as JSON, which YAML accepts)."""
    python, volumes = python_volumes()
    opts: dict[str, Any] = {
        "kubeconfig": str(kubeconfig),
        "namespace": namespace,
        "image": IMAGE,
        "image_pull_policy": "Never",
        "gang": "none",
        "rendezvous": "pod-ip",
        "python": python,
        "volumes": volumes,
        "schedule_timeout_s": 8,
        "start_timeout_s": 60,
        **options,
    }
    return (
        f"  - name: {name}\n    backend: kubernetes\n    provider: neo-k8s\n    nodes: {nodes}\n"
        f"    gpus_per_node: {GPUS_PER_NODE}\n    price_per_gpu_hour: 1.0\n    options: {json.dumps(opts)}\n"
    )


def sandbox(home_root: Path, config: str) -> Neo:
    """A ``neo`` with its own NEO_HOME and config, for module-scoped reservations."""
    home_root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        NEO_HOME=str(home_root / "home"),
        XDG_CONFIG_HOME=str(home_root / "xdg"),
        PYTHONUNBUFFERED="1",
        NEO_CONFIG=str(home_root / "neo.yaml"),
    )
    (home_root / "neo.yaml").write_text("clusters:\n" + config)
    return Neo(home=home_root / "home", config=home_root / "neo.yaml", env=env)


def fresh_namespace(cluster: KubeCluster, name: str) -> None:
    cluster.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true")
    cluster.kubectl("create", "namespace", name)
    # pods are refused until the namespace's default ServiceAccount exists
    deadline = time.monotonic() + 30
    while cluster.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode != 0:
        assert time.monotonic() < deadline, f"namespace {name}: no default ServiceAccount after 30s"
        time.sleep(0.2)


def left_in(cluster: KubeCluster, namespace: str, selector: str = MANAGED) -> list[str]:
    """jupyter-neo's pods and Services still in ``namespace``, read from the API server."""
    out = cluster.kubectl("-n", namespace, "get", "pods,services", "-l", selector, "-o", "name").stdout
    return out.split()


def pods_of(cluster: KubeCluster, namespace: str, rid: str) -> list[dict[str, Any]]:
    doc = cluster.get("-n", namespace, "pods", "-l", f"neo.jupyter.org/reservation={rid}")
    return sorted(doc["items"], key=lambda p: p["metadata"]["name"])


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The CLI's error as lines; asserts the shape users get: ``error: ...`` plus an optional hint."""
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    tail = lines[lines.index(errors[0]) :]
    assert len(tail) <= 2 and (len(tail) == 1 or tail[1].startswith("  hint: ")), proc.stderr
    return tail
