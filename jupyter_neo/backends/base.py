"""The contract every backend fulfils.

A backend admits a gang all-or-nothing (``allocate`` + ``start``), opens a byte stream to a pod
(``open_stream``), and gives everything back (``release``). Everything else (agents, sync, runs,
leases, costs) is the core's, identical on every backend.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from jupyter_neo.backends.handles import SlurmHandle, SshHandle, handle_of
from jupyter_neo.transport.bundle import stub_argv
from jupyter_neo.transport.streams import ByteStream

if TYPE_CHECKING:
    from jupyter_neo.config import Config
    from jupyter_neo.datasets.spec import DatasetUse
    from jupyter_neo.model import Cluster, HostStatus, Pod, Reservation
    from jupyter_neo.store import Store

# The progress callback of the reserve in progress. A context variable, not an ``allocate``
# argument, so backends that have nothing to report keep the plain signature, and concurrent
# reserves in one server (each its own task, each its own context) never see each other's.
reserve_progress: ContextVar[Callable[[str], None] | None] = ContextVar("reserve_progress", default=None)


def report_progress(message: str) -> None:
    """Tell the user what a slow ``allocate`` is waiting for (a queue's pending reason)."""
    callback = reserve_progress.get()
    if callback is not None:
        callback(message)


@dataclass(frozen=True)
class Capacity:
    """GPUs a cluster has right now; allocatable/requested where the backend can see them."""

    free: int
    allocatable: int | None = None
    requested: int | None = None
    hosts: list[HostStatus] | None = None


class Backend(abc.ABC):
    """One cluster's way of holding pods."""

    direct_after_boot = False
    """True when, once the agent runs, :meth:`open_agent_stream` reaches it without the boot stub."""

    def __init__(self, cluster: Cluster, config: Config, store: Store) -> None:
        self.cluster = cluster
        self.config = config
        self.store = store

    @abc.abstractmethod
    async def free_gpus(self) -> int:
        """GPUs that a new gang could get right now."""

    async def capacity(self) -> Capacity:
        """Free GPUs, plus what the cluster reports as allocatable and requested, if it can."""
        return Capacity(free=await self.free_gpus())

    @abc.abstractmethod
    async def allocate(self, res: Reservation) -> None:
        """Claim capacity for every pod of ``res`` at once, or raise NoCapacity holding nothing.

        Fills ``res.pods`` (rank order, leader first) and records the claim durably, in the same
        step, so a controller killed right after leaves something reconcile can find.
        """

    async def start(self, res: Reservation) -> None:  # noqa: B027 (optional hook)
        """Bring the pods up (create Kubernetes pods, wait for a Slurm allocation...)."""

    @abc.abstractmethod
    async def open_stream(self, pod: Pod, argv: list[str]) -> ByteStream:
        """A byte stream to ``argv`` running inside ``pod``."""

    @abc.abstractmethod
    def agent_dir(self, pod: Pod) -> str:
        """Where the agent keeps its socket, logs and zip inside the pod."""

    @abc.abstractmethod
    def workspace_dir(self, pod: Pod) -> str:
        """The pod's workspace root (generations live below it)."""

    def python(self, pod: Pod) -> str:
        return "python3"

    def pod_env(self, res: Reservation, pod: Pod) -> dict[str, str]:
        """Environment for every process the agent starts in this pod."""
        return dict(self.cluster.env)

    def rendezvous_hint(self) -> str:
        """What to change when a node cannot resolve the leader's address (backend-specific)."""
        return "every node must resolve the leader's host name; check the nodes' DNS / hosts files"

    async def open_agent_stream(self, pod: Pod, *, boot: bool = True) -> ByteStream:
        """A stream to the pod's agent; the boot stub starts the agent if none runs.

        ``boot=False`` (reconnecting to a claimed pod) asks a backend that can reach a running
        agent without the stub to do so and to fail rather than start a fresh, unclaimed agent.
        """
        return await self.open_stream(pod, stub_argv(self.python(pod), self.agent_dir(pod)))

    def data_path(self, res: Reservation, use: DatasetUse) -> str | None:
        """Where every rank finds a dataset this cluster holds (``NEO_DATA_<NAME>``); None if absent.

        The default is a ``path`` location as it is: a folder on every node (Slurm, SSH). Backends
        that can mount (Kubernetes: ``/data/<name>``) or link (local) say otherwise.
        """
        loc = use.location
        return loc.path if loc is not None and loc.path is not None else None

    def check_datasets(self, res: Reservation) -> None:  # noqa: B027 (optional hook)
        """Refuse, before anything is held, a dataset location this backend can see is missing."""

    async def pod_lost(self, res: Reservation, pod: Pod) -> None:  # noqa: B027 (optional hook)
        """A pod's agent vanished mid-run: make sure nothing it started keeps running."""

    @abc.abstractmethod
    async def release(self, res: Reservation) -> None:
        """Give back every pod and the capacity claim; idempotent; verify nothing remains."""

    async def ended_at(self, res: Reservation) -> datetime | None:
        """When the pods of a lost reservation stopped by themselves, as their agents reported it
        (None when unknown): the time a reservation is charged to, not when a reconcile noticed."""
        return None

    async def abandon(self, res: Reservation, exc: BaseException) -> None:
        """A failed ``allocate`` holds nothing: release what it took and close its pending record."""
        from jupyter_neo.model import ReservationState, utcnow

        with contextlib.suppress(Exception):
            await self.release(res)
        res.state = ReservationState.RELEASED
        res.released_at = utcnow()
        res.reason = str(getattr(exc, "message", "") or "reserve interrupted")
        self.store.save_reservation(res)

    async def reconcile(self, known: dict[str, Reservation]) -> dict[str, str]:
        """Compare the backend's truth with the store's.

        Cleans up pods whose reservation is unknown or released, and returns
        ``{reservation id: reason}`` for active reservations whose pods are gone.
        """
        return {}


class NodeDirBackend(Backend):
    """A backend whose pod is a directory ``base_dir/<reservation>/<node>`` on a remote node (Slurm
    nodes, SSH hosts): the agent and the workspace live below it, run by ``remote_python``.

    The node's name is in the path so pods stay apart where nodes share a filesystem (NFS homes,
    the in-repo test clusters).
    """

    base_dir = "/tmp/jupyter-neo-{user}"
    remote_python = "python3"

    def pod_dir(self, res_id: str, owner: str, node: str) -> str:
        base = self.base_dir.replace("{user}", owner or "neo")
        return f"{base}/{res_id}/{node}"

    handle_type: type[SlurmHandle | SshHandle]
    """The handle class of this backend's pods; both kinds hold the pod's directory."""

    def node_dir(self, pod: Pod) -> str:
        """The pod's directory on its node (what ``pod_dir`` gave at allocation)."""
        return handle_of(pod, self.handle_type).dir

    def agent_dir(self, pod: Pod) -> str:
        return f"{self.node_dir(pod)}/agent"

    def workspace_dir(self, pod: Pod) -> str:
        return f"{self.node_dir(pod)}/ws"

    def python(self, pod: Pod) -> str:
        return self.remote_python
