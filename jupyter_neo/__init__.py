"""jupyter-neo: edit in JupyterLab, run on a warm, gang-reserved, multi-node GPU cluster in seconds.

The public API is :class:`Client` (synchronous, safe in notebooks) and the model types; the ``neo``
CLI, the ``%neo`` magics and the REST handlers are thin layers over it.

Names are imported on first use: training scripts run ``from jupyter_neo import keep`` on every
rank, and should not pay for the controller's dependencies (pydantic, the state store, ...).
"""

from __future__ import annotations

import importlib

from jupyter_neo.keep import keep
from jupyter_neo.metrics import log

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ``neo`` starts in ~20 ms
if TYPE_CHECKING:
    from typing import Any

_LAZY = {
    "Client": "jupyter_neo.client",
    "NeoError": "jupyter_neo.errors",
    "Cluster": "jupyter_neo.model",
    "GangRequest": "jupyter_neo.model",
    "Pod": "jupyter_neo.model",
    "Reservation": "jupyter_neo.model",
    "ReservationState": "jupyter_neo.model",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jupyter_neo' has no attribute {name!r}")


__all__ = [
    "Client",
    "Cluster",
    "GangRequest",
    "NeoError",
    "Pod",
    "Reservation",
    "ReservationState",
    "keep",
    "log",
]
__version__ = "0.1.0"


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext jupyter_neo`` registers the ``%neo`` / ``%%neo`` magics."""
    from jupyter_neo.magics import load_ipython_extension as load

    load(shell)


def unload_ipython_extension(shell: Any) -> None:
    from jupyter_neo.magics import unload_ipython_extension as unload

    unload(shell)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The JupyterLab sidebar, built into ``jupyter_neo/labextension`` (see docs/labextension.md).

    ``pip install`` copies it to ``share/jupyter/labextensions/jupyter-neo``; this entry point is
    what ``jupyter labextension develop`` / ``jupyter-builder develop`` link from.
    """
    return [{"src": "labextension", "dest": "jupyter-neo"}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Jupyter Server 2 discovers the REST API and events through this (see jupyter_neo.server).

    An ExtensionApp, so the server's stop reaches ``JupyterNeo.stop_extension``.
    """
    from jupyter_neo.server import JupyterNeo

    return [{"module": "jupyter_neo.server", "app": JupyterNeo}]
