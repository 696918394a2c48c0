"""Who is acting: the OS user owning reservations, and this controller process's identity.

A pending reservation records its controller (pid + start time); a later command that finds that
controller gone knows the reserve was interrupted and rolls it back.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

import psutil


def owner() -> str:
    """Who owns what this controller reserves: ``$NEO_OWNER``, else the JupyterHub user, else the OS user.

    Never the Jupyter token's user name, which is a random string per browser session.
    """
    for var in ("NEO_OWNER", "JUPYTERHUB_USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def controller_identity() -> dict[str, Any]:
    return {"pid": os.getpid(), "started": psutil.Process().create_time()}


def controller_alive(pid: int | None, started: float | None) -> bool:
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped (no init in containers)
            return False
        return started is None or abs(proc.create_time() - started) < 0.01
    except psutil.Error:
        return False
