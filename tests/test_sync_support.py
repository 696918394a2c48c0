"""Shared helpers for the sync tests: a gang fixture and an independent tree comparison."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_neo.client import Client
from jupyter_neo.model import Reservation
from tests.conftest import Neo

Tree = dict[str, tuple[str, int, bytes]]
IGNORED_DIRS = {".git", "__pycache__", ".ipynb_checkpoints", "node_modules", ".venv", "venv"}


def tree(root: Path | str, *, skip: set[str] | None = None) -> Tree:
    """path -> (kind, mode, content or link target), read with plain os calls (not the scanner)."""
    out: Tree = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if os.fsdecode(d) not in IGNORED_DIRS]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(full, base))
            if skip and rel in skip:
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", 0, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", 0, b"")
            else:
                with open(full, "rb") as f:
                    out[rel] = ("f", st.st_mode & 0o7777, f.read())
    return out


def pod_current(res: Reservation, rank: int) -> Path:
    return Path(res.pods[rank].handle.dir) / "ws" / "current"


def assert_pods_match(res: Reservation, root: Path, skip: set[str] | None = None) -> None:
    local = tree(root, skip=skip)
    for rank in range(len(res.pods)):
        remote = tree(os.path.realpath(pod_current(res, rank)))
        assert remote == local, f"pod {rank} differs: {sorted(set(remote.items()) ^ set(local.items()))[:6]}"


@pytest.fixture
def gang(neo: Neo) -> Iterator[tuple[Client, Reservation]]:
    client = neo.client()
    res = client.reserve(gpus=16)
    yield client, res
    client.release(res.id)
    client.close()
