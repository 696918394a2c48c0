"""The Jupyter Server 2 extension: REST API under ``/jupyter-neo/`` and change events on the server's bus.

An :class:`~jupyter_server.extension.application.ExtensionApp` (found through
``jupyter_neo._jupyter_server_extension_points``, enabled by the
``jupyter-config/server-config/jupyter_neo.json`` that the wheel installs), because that is what
gives it a lifecycle: the server calls :meth:`JupyterNeo.stop_extension` when it stops, which
stops the change watcher, waits for a look in progress and closes every agent connection. A plain
module extension has no stop hook, so its periodic callback and connections would outlive a
stopped server in the same process (tests, JupyterHub's in-process restarts).

Every handler goes through one :class:`~jupyter_neo.server.manager.NeoManager`, which calls the
resident controller of ``$NEO_HOME`` (started on demand; the one the CLI and the kernels use), so
a notebook, a terminal and the sidebar share warm connections, watchers and run supervision, and
re-emits the controller's change events on the server's event bus. ``NEO_CONTROLLER=off`` keeps
the core in the server process (see docs/jupyter.md, "Where the work happens").

Configuration (``jupyter_server_config.py``)::

    c.JupyterNeo.poll_interval = 2.0   # seconds between looks for changes (by the controller); 0: off
    c.JupyterNeo.owner = "alice"       # who owns what the server reserves (default: $NEO_OWNER,
                                       # the JupyterHub user, else the OS user; never the token's user)
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Float, Unicode

from jupyter_neo.controller.api import ChangeKind
from jupyter_neo.server.handlers import MANAGER_KEY, NAMESPACE, ROUTES, route_regex
from jupyter_neo.server.manager import NeoManager

EVENT_SCHEMA_ID = "https://events.jupyter-neo.dev/change/v1"
EVENT_SCHEMA = Path(__file__).parent / "events" / "change.json"


class JupyterNeo(ExtensionApp):
    """The jupyter-neo server extension and its settings."""

    name = "jupyter_neo"
    load_other_extensions = True

    poll_interval = Float(
        2.0,
        config=True,
        help="Seconds between looks at the state store for changes made outside the server "
        "(CLI, kernels), announced as change events. 0 turns the watcher off.",
    )
    owner = Unicode(
        "",
        config=True,
        help="Owner of the reservations this server makes. Empty: $NEO_OWNER, else the JupyterHub "
        "user, else the OS user. Never the token's per-session user name.",
    )

    manager: NeoManager | None = None
    watcher: PeriodicCallback | None = None

    def initialize_settings(self) -> None:
        """Register the event schema and build the manager the handlers share."""
        if self.owner:
            os.environ["NEO_OWNER"] = self.owner
        assert self.serverapp is not None and self.serverapp.event_logger is not None
        self.serverapp.event_logger.register_event_schema(EVENT_SCHEMA)
        self.manager = NeoManager(self._emit)
        self.settings[MANAGER_KEY] = self.manager
        # Started at load, like any server component; stop_extension stops it.
        self._start_watcher()
        self.log.info("jupyter-neo: REST API at %s%s/", self.serverapp.base_url, NAMESPACE)

    def initialize_handlers(self) -> None:
        # ExtensionApp prefixes base_url to each pattern.
        self.handlers.extend((url_path_join(NAMESPACE, route_regex(t)) + "$", h) for t, h in ROUTES)

    def _emit(self, kind: ChangeKind, ident: str, state: str) -> None:
        assert self.serverapp is not None and self.serverapp.event_logger is not None
        self.serverapp.event_logger.emit(
            schema_id=EVENT_SCHEMA_ID, data={"kind": kind, "id": ident, "state": state}
        )

    def _start_watcher(self) -> None:
        if self.poll_interval <= 0 or self.manager is None:
            return
        if self.manager.in_process:
            self.watcher = PeriodicCallback(self.manager.poll_changes, self.poll_interval * 1000)
            self.watcher.start()
            self.settings["jupyter_neo_watcher"] = self.watcher
        else:  # the controller's event stream, once the server's loop runs
            IOLoop.current().add_callback(self.manager.watch, self.poll_interval)

    async def stop_extension(self) -> None:
        """The server is stopping: no more looks, the one in progress finished, connections closed."""
        if self.watcher is not None:
            self.watcher.stop()
        if self.manager is not None:
            await self.manager.close()
        self.log.info("jupyter-neo: stopped (watcher off, agent connections closed)")
