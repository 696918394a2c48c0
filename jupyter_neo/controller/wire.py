"""The controller socket's framing and the paths it lives at (stdlib only: the thin CLI imports it).

A frame is a 4-byte big-endian length and a UTF-8 JSON object with a ``type``. Both sides send
``protocol`` in their first frame; a mismatch ends the connection with one line naming both.
"""

from __future__ import annotations

import json
import os
import socket
import struct

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the thin CLI's start-up)
if TYPE_CHECKING:
    import asyncio
    from typing import Any

PROTOCOL = 2
"""Bumped on any incompatible change of the frames below (docs/protocol.md)."""
MAX_FRAME = 64 * 2**20
_LEN = struct.Struct(">I")

SOCKET = "controller.sock"
LOCK = "controller.lock"  # held while starting one (so two racing starts yield one controller)
LIFE = "controller.pid"  # flocked by the running controller for its whole life; holds its pid
LOG = "controller.log"

# The environment a controller's behaviour depends on besides NEO_HOME/NEO_CONFIG (which every
# request carries): a client whose values differ runs its command in-process instead.
FINGERPRINT_PREFIXES = ("NEO_",)
FINGERPRINT_EXTRA = ("KUBECONFIG", "SLURM_CONF", "JUPYTERHUB_USER")
PER_REQUEST = ("NEO_HOME", "NEO_CONFIG", "NEO_CONTROLLER", "NEO_CONTROLLER_IDLE")


def env_fingerprint(env: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The part of an environment a controller must share with its clients."""
    return {
        k: v
        for k, v in env.items()
        if (k.startswith(FINGERPRINT_PREFIXES) or k in FINGERPRINT_EXTRA) and k not in PER_REQUEST
    }


def encode(msg: dict[str, Any]) -> bytes:
    data = json.dumps(msg, separators=(",", ":"), default=str).encode("utf-8", "surrogateescape")
    return _LEN.pack(len(data)) + data


def _decode(data: bytes) -> dict[str, Any]:
    msg = json.loads(data.decode("utf-8", "surrogateescape"))
    if not isinstance(msg, dict):
        raise ValueError("frame is not a JSON object")
    return msg


def send(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.sendall(encode(msg))


def recv(sock: socket.socket) -> dict[str, Any] | None:
    """The next frame, or None at end of stream."""
    head = _recv_exact(sock, _LEN.size)
    if head is None:
        return None
    (size,) = _LEN.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is over the limit")
    body = _recv_exact(sock, size)
    if body is None:
        return None
    return _decode(body)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


async def read(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame from an asyncio stream (the controller's side), or None at its end."""
    try:
        head = await reader.readexactly(_LEN.size)
        (size,) = _LEN.unpack(head)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes is over the limit")
        return _decode(await reader.readexactly(size))
    except (EOFError, ConnectionError):  # asyncio.IncompleteReadError is an EOFError
        return None


def mismatch(theirs: object, side: str) -> str:
    """The one line a protocol mismatch prints, naming both versions."""
    return (
        f"the neo controller speaks protocol {theirs if side == 'controller' else PROTOCOL} and this "
        f"neo command speaks protocol {PROTOCOL if side == 'controller' else theirs}; "
        "stop the old controller with: neo daemon stop"
    )
