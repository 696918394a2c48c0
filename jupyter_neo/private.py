"""Owner-only files and directories, whatever the umask.

``$NEO_HOME`` holds every reservation's HMAC secret (``state.sqlite`` and its WAL), run logs and
the local backend's pod workspaces: code and output other users of the machine must not read. A
permissive umask (``002``, ``000``) must not widen that, so files are created with an explicit
mode and ``fchmod``/``chmod``-ed after creation (the umask only ever narrows a mode given to
``open``/``mkdir``; ``chmod`` sets it exactly).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) owner-only; tighten it if it exists and is ours."""
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    # Parents we created ourselves are ours to tighten; an existing parent (a home directory) is not.
    for made in [path, *missing]:
        with contextlib.suppress(OSError):
            os.chmod(made, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists and is readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def open_private(path: Path, mode: str = "ab") -> BinaryIO:
    """``open(path, mode)`` for binary append/write, created owner-only."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, mode)  # type: ignore[return-value]
