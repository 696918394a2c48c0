"""The narrow views of the core that sync and runs need (instead of the whole ``Core``).

``GangSync`` needs a place for its caches, connections to a gang's pods and whether to track
changes; ``RunSupervisor`` needs the state store, connections, a workspace sync and the backend
of a cluster. Naming exactly that keeps ``core -> sync/runs`` one-way: ``Core`` satisfies both
protocols structurally, and neither module imports it (not even for type checking).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from jupyter_neo.backends.base import Backend
    from jupyter_neo.config import Config
    from jupyter_neo.model import Pod, Reservation
    from jupyter_neo.store import Store
    from jupyter_neo.sync.report import SyncReport
    from jupyter_neo.transport.connection import AgentConnection


class SyncHost(Protocol):
    """What :class:`jupyter_neo.sync.push.GangSync` uses of its owner."""

    config: Config
    track_changes: bool

    async def connect(self, res: Reservation) -> list[AgentConnection]: ...


class RunHost(Protocol):
    """What :class:`jupyter_neo.runs.supervisor.RunSupervisor` uses of its owner."""

    config: Config
    store: Store

    async def connect(self, res: Reservation) -> list[AgentConnection]: ...

    async def open_connection(
        self, res: Reservation, pod: Pod, *, claim: dict[str, Any] | None = None, timeout: float = ...
    ) -> AgentConnection: ...

    async def sync(self, res: Reservation, root: str | Path) -> SyncReport: ...

    def backend(self, cluster_name: str) -> Backend: ...
