"""The embedded local backend: nodes are sandboxes on this machine, pods are agent processes.

A cluster of ``nodes x gpus_per_node`` virtual GPUs is accounted in the state store; a gang takes
its slots in one ``BEGIN IMMEDIATE`` transaction (all-or-nothing across processes). Each pod is a
directory ``$NEO_HOME/local/<cluster>/<reservation>/node<i>/`` holding its agent and workspace; its
processes see ``CUDA_VISIBLE_DEVICES`` set to their slot list. Pods share the loopback network
(no network namespaces): runs choose free ports, so two gangs on one machine do not collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from neo_agent import reaper
from neo_agent.boot import SOCKET_NAME

from jupyter_neo.backends.base import Backend
from jupyter_neo.backends.handles import LocalHandle, handle_of
from jupyter_neo.datasets.spec import DatasetUse
from jupyter_neo.errors import BackendError, InvalidRequest, NoCapacity, NotFound
from jupyter_neo.identity import controller_identity
from jupyter_neo.model import Pod, Reservation, ReservationState
from jupyter_neo.private import private_dir
from jupyter_neo.transport.streams import ByteStream, SubprocessStream, UnixSocketStream


class LocalBackend(Backend):
    direct_after_boot = True  # the agent's unix socket is on this machine

    @property
    def root(self) -> Path:
        return self.config.home / "local" / self.cluster.name

    def res_dir(self, rid: str) -> Path:
        return self.root / rid

    async def free_gpus(self) -> int:
        used = self.store.local_used(self.store._conn(), self.cluster.name)
        return self.cluster.total_gpus - sum(len(v) for v in used.values())

    async def allocate(self, res: Reservation) -> None:
        """Pick nodes with enough free slots; write slots and the pending record in one transaction."""
        with self.store.transaction() as db:
            used = self.store.local_used(db, self.cluster.name)
            chosen: list[tuple[int, list[int]]] = []
            for node in range(self.cluster.nodes):
                free = [g for g in range(self.cluster.gpus_per_node) if g not in used.get(node, set())]
                if len(free) >= res.gpus_per_node:
                    chosen.append((node, free[: res.gpus_per_node]))
                if len(chosen) == res.nodes:
                    break
            if len(chosen) < res.nodes:
                free_total = self.cluster.total_gpus - sum(len(v) for v in used.values())
                raise NoCapacity(
                    f"cluster {self.cluster.name!r} has {free_total} of {self.cluster.total_gpus} GPUs free, "
                    f"not {res.nodes} nodes x {res.gpus_per_node}",
                    "release a reservation (neo status / neo release ID), ask for fewer GPUs, or try another cluster",
                )
            res.pods = []
            for rank, (node, gpus) in enumerate(chosen):
                self.store.local_take(db, self.cluster.name, node, gpus, res.id)
                pod_dir = self.res_dir(res.id) / f"node{node}"
                res.pods.append(
                    Pod(
                        name=f"{res.id}-{rank}",
                        rank=rank,
                        address="127.0.0.1",
                        gpus=gpus,
                        handle=LocalHandle(node=node, dir=str(pod_dir)),
                    )
                )
            self.store.save_reservation(res, db, **controller_identity())

    async def start(self, res: Reservation) -> None:
        # Owner-only whatever the umask: the pod's workspace (your code) and agent live below.
        for pod in res.pods:
            private_dir(self.node_dir(pod))
        for use in res.datasets:
            folder = dataset_folder(use)
            if folder is not None and use.path is not None:
                link = Path(use.path)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(folder.resolve(), target_is_directory=True)

    def data_path(self, res: Reservation, use: DatasetUse) -> str | None:
        """``<reservation>/data/<name>``: a symlink to the folder, the local stand-in for ``/data/<name>``.

        Local pods are processes of this user, so nothing can be mounted (that needs root) and
        read-only is not enforced: the ranks get the folder's own permissions. Release removes the
        link, never the folder (``rmtree`` unlinks symlinks without following them).
        """
        return str(self.res_dir(res.id) / "data" / use.name) if dataset_folder(use) else None

    def check_datasets(self, res: Reservation) -> None:
        for use in res.datasets:
            folder = dataset_folder(use)
            if folder is not None and not folder.is_dir():
                raise InvalidRequest(
                    f"dataset {use.name}: folder {folder} on cluster {self.cluster.name!r} does not exist",
                    "fix its location in the configuration (neo datasets shows them)",
                )

    async def ended_at(self, res: Reservation) -> datetime | None:
        """The latest stop time the pods' agents wrote (``exit.json``), if every pod wrote one."""
        times = [agent_exit_time(Path(self.agent_dir(p))) for p in res.pods]
        known = [t for t in times if t is not None]
        if not known or len(known) != len(times):
            return None
        return datetime.fromtimestamp(max(known), UTC)

    def node_dir(self, pod: Pod) -> Path:
        """The pod's directory (``<reservation dir>/node<N>``): its agent and workspace live below."""
        return Path(handle_of(pod, LocalHandle).dir)

    def agent_dir(self, pod: Pod) -> str:
        return str(self.node_dir(pod) / "agent")

    def workspace_dir(self, pod: Pod) -> str:
        return str(self.node_dir(pod) / "ws")

    def python(self, pod: Pod) -> str:
        return sys.executable

    def pod_env(self, res: Reservation, pod: Pod) -> dict[str, str]:
        env = super().pod_env(res, pod)
        slots = ",".join(str(g) for g in pod.gpus)
        env.update(
            CUDA_VISIBLE_DEVICES=slots,
            NEO_GPU_SLOTS=slots,
            NEO_LOCAL_NODE=str(handle_of(pod, LocalHandle).node),
            PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        )
        return env

    async def open_agent_stream(self, pod: Pod, *, boot: bool = True) -> ByteStream:
        """Straight to the agent's socket when it runs (the controller's warm connections), else
        through the boot stub, which starts it (only when ``boot``: a claimed pod whose agent is
        gone is lost, and a fresh agent there would be an orphan)."""
        path = os.path.join(self.agent_dir(pod), SOCKET_NAME)
        try:
            return await UnixSocketStream.open(path, label=f"local:{pod.name}")
        except OSError as exc:
            if not boot:
                raise BackendError(f"{pod.name}: its agent is not running ({exc.strerror})") from None
        # ``options.start_delay_s`` emulates a cloud that provisions pods one by one (demos, tests).
        delay = float(self.cluster.options.get("start_delay_s", 0)) * pod.rank
        if delay and pod.state == "pending":
            await asyncio.sleep(delay)
        return await super().open_agent_stream(pod)

    async def open_stream(self, pod: Pod, argv: list[str]) -> ByteStream:
        return await SubprocessStream.open(argv, cwd=str(self.node_dir(pod)), label=f"local:{pod.name}")

    async def pod_lost(self, res: Reservation, pod: Pod) -> None:
        await asyncio.to_thread(kill_tree_under, self.node_dir(pod))

    async def release(self, res: Reservation) -> None:
        await asyncio.to_thread(self._release_sync, res.id)

    def _release_sync(self, rid: str) -> None:
        kill_tree_under(self.res_dir(rid))
        shutil.rmtree(self.res_dir(rid), ignore_errors=True)
        self.store.local_free(rid)

    async def reconcile(self, known: dict[str, Reservation]) -> dict[str, str]:
        """Clean pods and slots that no active reservation owns; report active ones whose agents died.

        Race-safe against a concurrent ``allocate``: a reservation's record and slots are written in
        one transaction *before* its directories exist, so directories are listed first and records
        read afterwards, and slots are checked against records inside one transaction.
        """
        dirs = [entry.name for entry in self.root.iterdir()] if self.root.exists() else []
        for rid in dirs:
            try:
                res: Reservation | None = self.store.reservation(rid)
            except NotFound:
                res = None
            if res is None or res.state is ReservationState.RELEASED:
                await asyncio.to_thread(self._release_sync, rid)
        with self.store.transaction() as db:
            for rid in self.store.local_holders(self.cluster.name):
                row = db.execute("SELECT state FROM reservations WHERE id = ?", (rid,)).fetchone()
                if row is None or row["state"] == ReservationState.RELEASED.value:
                    db.execute("DELETE FROM local_slots WHERE reservation = ?", (rid,))
        lost: dict[str, str] = {}
        for rid, res in known.items():
            if res.live:
                gone = [p for p in res.pods if not agent_alive(Path(self.agent_dir(p)))]
                if gone:
                    lost[rid] = (
                        agent_exit_reason(Path(self.agent_dir(gone[0]))) or f"pod {gone[0].name} is gone"
                    )
        return lost


def dataset_folder(use: DatasetUse) -> Path | None:
    """The folder a local cluster holds a dataset in (None when it does not hold it)."""
    loc = use.location
    return Path(loc.path).expanduser() if loc is not None and loc.path is not None else None


def agent_alive(agent_dir: Path) -> bool:
    """True when the agent whose pid file is in ``agent_dir`` is running."""
    try:
        pid = int((agent_dir / "agent.pid").read_text())
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and str(agent_dir) in " ".join(proc.cmdline())
    except (OSError, ValueError, psutil.Error):
        return False


def agent_exit_reason(agent_dir: Path) -> str | None:
    import json

    try:
        return str(json.loads((agent_dir / "exit.json").read_text())["reason"])
    except (OSError, ValueError, KeyError):
        return None


def agent_exit_time(agent_dir: Path) -> float | None:
    import json
    import math

    try:
        value = float(json.loads((agent_dir / "exit.json").read_text())["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if math.isfinite(value) else None


def procs_under(root: Path) -> list[psutil.Process]:
    """Every process that belongs to a pod below ``root``: agents by argv, their children by env."""
    needle = str(root)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        try:
            cmd = proc.info["cmdline"] or []
            if any(needle in part for part in cmd[1:]):
                found.append(proc)
                continue
            env_dir = proc.environ().get("NEO_AGENT_DIR", "")
            if env_dir.startswith(needle):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def agent_dirs_under(root: Path, depth: int = 5) -> list[Path]:
    """Agent directories below ``root`` (pods' ``.../node<i>/agent``), not walking workspaces."""
    found: list[Path] = []
    for dirpath, dirnames, _files in os.walk(root):
        here = Path(dirpath)
        if here.name == "agent" and (here / "agent.log").exists():
            found.append(here)
            dirnames[:] = []
            continue
        if len(here.relative_to(root).parts) >= depth:
            dirnames[:] = []
        dirnames[:] = [d for d in dirnames if d not in ("ws", "runs", "procs")]
    return found


def kill_tree_under(root: Path, grace: float = 2.0) -> None:
    """SIGTERM then SIGKILL every pod process below ``root``; returns when none is left.

    Processes that left their session and environment are still in their launcher's cgroup,
    which the agent recorded: those groups are killed too, even when the agent itself is gone.
    """
    if root.exists():
        for agent_dir in agent_dirs_under(root):
            reaper.kill_recorded(str(agent_dir))
    procs = procs_under(root)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _gone, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=2)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and procs_under(root):
        for proc in procs_under(root):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        time.sleep(0.05)
