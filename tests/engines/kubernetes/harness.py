"""Python face of the in-repo real Kubernetes (``build-all.sh`` / ``start-k8s.sh`` / ``stop-k8s.sh``).

Why it exists: the Kubernetes backend must be tested against a real apiserver, scheduler, kubelet
and container runtime, not only against the in-repo emulator written by the same hands. These
scripts build Kubernetes v1.20.2 once per machine (Debian's source package; ~8-10 min on 2 cores)
into a cache outside the checkout, and start two nodes (two kubelets, each with its own containerd,
bridge and pod subnet) in ~45 s. This module runs them and hands tests a :class:`KubeCluster`:
paths, tokens and a ``kubectl`` of the same version as the cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VERSION = "1.20.2"
CACHE = Path(os.environ.get("K8S_CACHE", f"/var/cache/jupyter-neo/k8s-{VERSION}"))
RUN = Path(os.environ.get("K8S_RUN", "/var/tmp/neo-k8s"))
BIN = CACHE / "bin"
BRIDGES = ("neok8s0", "neok8s1")
N2_CGROUP = "neo-k8s-n2"
GPUS_PER_NODE = 8
IMAGE = "localhost/neo-python:v2"  # PY_IMAGE in common.sh


class KubeHarnessError(RuntimeError):
    """The cluster could not be built, started or stopped; ``unavailable`` = cannot run here."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


@dataclass(frozen=True)
class KubeCluster:
    """What a test needs to use the running two-node cluster."""

    run_dir: Path
    kubeconfig: Path
    server: str
    ca: Path
    admin_token: str
    user_token: str
    nodes: tuple[str, ...]

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl`` of the cluster's own version (the machine's may be any other)."""
        proc = subprocess.run(
            [str(BIN / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def get(self, *args: str) -> Any:
        """``kubectl get ... -o json`` parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def write_kubeconfig(self, path: Path, *, token: str, namespace: str, server: str | None = None) -> Path:
        """A kubeconfig for one token (context ``neo``): how a user other than the admin logs in."""
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "neo-k8s",
                            "cluster": {
                                "server": server or self.server,
                                "certificate-authority": str(self.ca),
                            },
                        }
                    ],
                    "users": [{"name": "u", "user": {"token": token}}],
                    "contexts": [
                        {
                            "name": "neo",
                            "context": {"cluster": "neo-k8s", "user": "u", "namespace": namespace},
                        }
                    ],
                    "current-context": "neo",
                }
            )
        )
        path.chmod(0o600)
        return path


def built() -> bool:
    return (CACHE / ".complete").is_file() and (BIN / "kubelet").is_file() and (BIN / "kubectl").is_file()


def cannot_host() -> str | None:
    """Why this machine cannot run the cluster (None when it can)."""
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root (containerd, kubelet, bridges and mounts); run the tests as root"
    if not built():
        return f"Kubernetes {VERSION} is not built in {CACHE}: run `make k8s-harness` (~10 min once)"
    for tool in ("containerd", "runc", "etcd", "ip", "iptables", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: run `make k8s-harness` (installs the Debian packages)"
    return None


def _script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NODES": "2", "FAKE_GPUS": str(GPUS_PER_NODE)}
    try:
        return subprocess.run(
            [str(HERE / name), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise KubeHarnessError(f"{name} did not finish within {timeout:.0f}s: {exc.stdout!r}") from None


def start_cluster() -> KubeCluster:
    """Start (or restart) the two-node cluster; ~45 s."""
    why = cannot_host()
    if why:
        raise KubeHarnessError(why, unavailable=True)
    proc = _script("start-k8s.sh", timeout=300)
    if proc.returncode != 0:
        raise KubeHarnessError(
            f"start-k8s.sh failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return load_cluster()


def load_cluster() -> KubeCluster:
    pki = RUN / "pki"
    kubeconfig = pki / "admin.kubeconfig"
    tokens = {
        line.split(",")[1]: line.split(",")[0] for line in (pki / "tokens.csv").read_text().splitlines()
    }
    server = re.search(r"server: (\S+)", kubeconfig.read_text())
    cluster = KubeCluster(
        run_dir=RUN,
        kubeconfig=kubeconfig,
        server=server.group(1) if server else "https://127.0.0.1:6443",
        ca=pki / "ca.crt",
        admin_token=tokens["admin"],
        user_token=tokens["neo-user"],
        nodes=(),
    )
    nodes = tuple(sorted(n["metadata"]["name"] for n in cluster.get("nodes")["items"]))
    return KubeCluster(**{**cluster.__dict__, "nodes": nodes})


def already_running() -> KubeCluster | None:
    """The cluster, if both nodes are up already (a kept one: ``NEO_K8S_KEEP=1``)."""
    if not (RUN / "pki" / "tokens.csv").is_file() or not (BIN / "kubectl").is_file():
        return None
    try:
        cluster = load_cluster()
    except (AssertionError, KeyError, OSError, ValueError):
        return None
    return cluster if len(cluster.nodes) == 2 else None


def stop_cluster() -> None:
    proc = _script("stop-k8s.sh", timeout=180)
    if proc.returncode != 0:
        raise KubeHarnessError(f"stop-k8s.sh failed ({proc.returncode}): {proc.stderr[-2000:]}")


def leftovers() -> list[str]:
    """What a stopped cluster must not leave behind: processes, mounts, netns, bridges, rules, cgroups."""
    found: list[str] = []
    markers = (str(RUN), str(BIN))
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmd for m in markers):
            found.append(f"process {pid}: {cmd[:120]}")
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    found += [f"mount {m.split()[1]}" for m in mounts if m.split()[1].startswith(str(RUN) + "/")]
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=False).stdout
    found += [f"bridge {b}" for b in BRIDGES if re.search(rf"^{b}\b", links, re.M)]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    found += [f"netns {n.split()[0]}" for n in netns.splitlines() if n.startswith("cni-")]
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True, check=False).stdout
    found += [f"iptables {r}" for r in rules.splitlines() if N2_CGROUP in r]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/{N2_CGROUP}")]
    return found
