"""The controller socket's framing and the paths it lives at (stdlib only: the thin CLI imports it).

A frame is a 4-byte big-endian length and a UTF-8 JSON object with a ``type``. Both sides send
``protocol`` in their first frame; a mismatch ends the connection with one line naming both.
"""

from __future__ import annotations

import os
import struct

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the thin CLI's start-up)
if TYPE_CHECKING:
    import _socket
    import asyncio
    from collections.abc import Callable
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


class _ScanContext:
    """What CPython's C JSON scanner reads from a decoder: ``json.JSONDecoder``'s defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    array_hook = None  # read from Python 3.15 on
    parse_float = float
    parse_int = int
    parse_constant = float  # "NaN", "Infinity", "-Infinity", as json.loads takes them


def _codec() -> tuple[Callable[[Any], str], Callable[[str], Any]]:
    """JSON text from and to Python objects, the same as ``json.dumps(separators=(",", ":"),
    default=str)`` and ``json.loads``, but from the C accelerator ``_json`` directly.

    Why: ``import json`` compiles regular expressions (``re``) at import, ~5 ms of the thin CLI's
    start, which otherwise imports next to nothing. The C encoder and scanner are what ``json``
    itself runs; they are checked on a sample here, and ``json`` is used when they are absent or
    behave otherwise (another Python implementation or version).
    """
    try:
        import _json

        encoder = _json.make_encoder(
            None, str, _json.encode_basestring_ascii, None, ":", ",", False, False, True
        )
        scanner = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]

        def dumps(obj: Any) -> str:
            return "".join(encoder(obj, 0))

        def loads(text: str) -> Any:
            text = text.strip(" \t\n\r")
            try:
                obj, end = scanner(text, 0)
            except StopIteration as exc:
                raise ValueError(f"invalid JSON at character {exc.value}") from None
            if end != len(text):
                raise ValueError(f"extra data after JSON at character {end}")
            return obj

        sample = {"a": ["\u00fc\udcff\n", 1, 2.5, None, True, False, {}], "b": -1e300}
        text = '{"a":["\\u00fc\\udcff\\n",1,2.5,null,true,false,{}],"b":-1e+300}'
        if dumps(sample) == text and loads(text) == sample:
            return dumps, loads
    except (ImportError, TypeError, ValueError, AttributeError):
        pass
    import json

    return (lambda obj: json.dumps(obj, separators=(",", ":"), default=str)), json.loads


_dumps, _loads = _codec()


def encode(msg: dict[str, Any]) -> bytes:
    data = _dumps(msg).encode("utf-8", "surrogateescape")
    return _LEN.pack(len(data)) + data


def _decode(data: bytes) -> dict[str, Any]:
    msg = _loads(data.decode("utf-8", "surrogateescape"))
    if not isinstance(msg, dict):
        raise ValueError("frame is not a JSON object")
    return msg


def send(sock: _socket.socket, msg: dict[str, Any]) -> None:
    sock.sendall(encode(msg))


def recv(sock: _socket.socket) -> dict[str, Any] | None:
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


def _recv_exact(sock: _socket.socket, n: int) -> bytes | None:
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
