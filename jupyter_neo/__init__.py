"""jupyter-neo: edit in JupyterLab, run on a warm, gang-reserved, multi-node GPU cluster in seconds.

The public API is :class:`Client` (synchronous, safe in notebooks) and the model types; the ``neo``
CLI, the ``%neo`` magics and the REST handlers are thin layers over it.
"""

from typing import Any

from jupyter_neo.client import Client
from jupyter_neo.errors import NeoError
from jupyter_neo.keep import keep
from jupyter_neo.model import Cluster, GangRequest, Pod, Reservation, ReservationState

__all__ = ["Client", "Cluster", "GangRequest", "NeoError", "Pod", "Reservation", "ReservationState", "keep"]
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


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Jupyter Server 2 discovers the REST API and events through this (see jupyter_neo.server)."""
    return [{"module": "jupyter_neo"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from jupyter_neo.server import load

    load(server_app)
