"""The Jupyter Server 2 extension: REST API under ``/jupyter-neo/`` and change events on the server's bus.

Loaded through ``jupyter_neo._jupyter_server_extension_points`` (enabled by the
``jupyter-config/server-config/jupyter_neo.json`` that the wheel installs). It builds one
:class:`~jupyter_neo.core.Core` on the server's event loop, shared with every handler through a
:class:`~jupyter_neo.server.manager.NeoManager`; the state store is the same file the CLI and the
kernels use, so a reservation made anywhere shows up everywhere.

Configuration (``jupyter_server_config.py``)::

    c.JupyterNeo.poll_interval = 2.0   # seconds between looks for changes made outside the server; 0: off
    c.JupyterNeo.owner = "alice"       # who owns what the server reserves (default: $NEO_OWNER,
                                       # the JupyterHub user, else the OS user; never the token's user)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tornado.ioloop import PeriodicCallback
from traitlets import Float, Unicode
from traitlets.config import Configurable

from jupyter_neo.config import load_config
from jupyter_neo.core import Core
from jupyter_neo.server.handlers import setup_handlers
from jupyter_neo.server.manager import ChangeKind, NeoManager

EVENT_SCHEMA_ID = "https://events.jupyter-neo.dev/change/v1"
EVENT_SCHEMA = Path(__file__).parent / "events" / "change.json"


class JupyterNeo(Configurable):
    """Settings of the jupyter-neo server extension."""

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


def load(server_app: Any) -> None:
    """Register the event schema, the routes and the change watcher on a running ServerApp."""
    settings = JupyterNeo(parent=server_app)
    if settings.owner:
        os.environ["NEO_OWNER"] = settings.owner
    server_app.event_logger.register_event_schema(EVENT_SCHEMA)

    def emit(kind: ChangeKind, ident: str, state: str) -> None:
        server_app.event_logger.emit(
            schema_id=EVENT_SCHEMA_ID, data={"kind": kind, "id": ident, "state": state}
        )

    manager = NeoManager(Core(load_config()), emit)
    setup_handlers(server_app.web_app, manager)
    if settings.poll_interval > 0:
        watcher = PeriodicCallback(manager.poll_changes, settings.poll_interval * 1000)
        watcher.start()
        server_app.web_app.settings["jupyter_neo_watcher"] = watcher
    server_app.log.info("jupyter-neo: REST API at %sjupyter-neo/", server_app.web_app.settings["base_url"])
