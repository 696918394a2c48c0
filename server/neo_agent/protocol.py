"""Wire format shared by the agent and the controller (the controller imports this very module).

A frame is ``>II`` (header length, payload length), a UTF-8 JSON header object, then an opaque
binary payload. Binary data (file contents, process output) never goes through JSON, so large and
non-UTF-8 data cost no escaping. Requests carry an integer ``id``; every reply echoes it, and a
streaming reply sends several frames with the same id before one carrying ``"done": true``.
See docs/protocol.md for the operations.
"""

import asyncio
import hashlib
import hmac
import json
import struct
from typing import Any, Dict, Optional, Tuple

HEADER = struct.Struct(">II")
MAX_HEADER = 4 * 1024 * 1024
MAX_PAYLOAD = 512 * 1024 * 1024
# Before a peer has authenticated it may send one small frame and no payload: nothing it says can
# make the agent (or a relay) buffer more than this. A claim carries labels and the pod's base
# environment, so an unclaimed agent accepts a larger first frame than a claimed one.
PREAUTH_HEADER = 4 * 1024
CLAIM_HEADER = 64 * 1024

Frame = Tuple[Dict[str, Any], bytes]


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed frame of this protocol."""


def encode(header: Dict[str, Any], payload: bytes = b"") -> bytes:
    """Serialise one frame."""
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if len(head) > MAX_HEADER or len(payload) > MAX_PAYLOAD:
        raise ProtocolError("frame too large")
    return HEADER.pack(len(head), len(payload)) + head + payload


async def read_frame(
    reader: asyncio.StreamReader, max_header: int = MAX_HEADER, max_payload: int = MAX_PAYLOAD
) -> Optional[Frame]:
    """Read one frame; None on a clean end of stream before a frame starts.

    The sizes are checked from the 8-byte prefix, before any of the frame is buffered: a peer
    cannot make the reader allocate more than ``max_header + max_payload``.
    """
    try:
        raw = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("stream closed inside a frame header") from exc
        return None
    head_len, payload_len = HEADER.unpack(raw)
    if head_len > max_header or payload_len > max_payload:
        raise ProtocolError("frame too large (%d, %d)" % (head_len, payload_len))
    try:
        head = await reader.readexactly(head_len)
        payload = await reader.readexactly(payload_len) if payload_len else b""
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("stream closed inside a frame") from exc
    try:
        header = json.loads(head.decode("utf-8"))
    except ValueError as exc:
        raise ProtocolError("frame header is not JSON") from exc
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not an object")
    return header, payload


def auth_mac(secret: str, nonce: str) -> str:
    """Answer to the agent's challenge: HMAC-SHA256 of the nonce under the reservation secret."""
    return hmac.new(secret.encode("utf-8"), nonce.encode("utf-8"), hashlib.sha256).hexdigest()


def mac_ok(secret: str, nonce: str, mac: str) -> bool:
    return hmac.compare_digest(auth_mac(secret, nonce), str(mac))
