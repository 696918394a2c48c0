"""Field checks for requests, shared by every operation of the agent.

An authenticated controller is trusted with the pod, not with the agent's integrity: a request
with a field of the wrong type, an infinite number or an odd process name must be answered with
``bad_request`` and change nothing, never crash a handler half way or a background task later
(a ``lease`` of ``"soon"`` once killed the lease watcher, so idle TTL and deadline stopped
being enforced). Each helper returns the checked value or raises :class:`FieldError`, which the
dispatcher answers as ``{ok: false, code: "bad_request"}``. Stdlib only, Python 3.8 syntax.
"""

import math
import re
from typing import Any, Dict, List, Optional

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
HEX64_RE = re.compile(r"[0-9a-f]{64}\Z")
MAX_TEXT = 1 << 16


class FieldError(ValueError):
    """A request field is missing, of the wrong type, or out of range."""


def _missing(h: Dict[str, Any], key: str) -> bool:
    return key not in h or h[key] is None


def text(h: Dict[str, Any], key: str, default: Optional[str] = None, max_len: int = MAX_TEXT) -> str:
    if _missing(h, key):
        if default is None:
            raise FieldError("%s is required" % key)
        return default
    value = h[key]
    if not isinstance(value, str) or "\x00" in value or len(value) > max_len:
        raise FieldError("%s must be a string of at most %d characters" % (key, max_len))
    return value


def integer(
    h: Dict[str, Any], key: str, default: Optional[int] = None, lo: int = 0, hi: int = 1 << 62
) -> int:
    if _missing(h, key):
        if default is None:
            raise FieldError("%s is required" % key)
        return default
    value = h[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FieldError("%s must be an integer from %d to %d" % (key, lo, hi))
    return value


def number(h: Dict[str, Any], key: str, lo: float = 0.0, hi: float = 1e12) -> Optional[float]:
    """A finite number in [lo, hi], or None when absent/null (``nan``/``inf`` are refused)."""
    if _missing(h, key):
        return None
    value = h[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError("%s must be a number" % key)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise FieldError("%s must be a finite number from %g to %g" % (key, lo, hi))
    return float(value)


def boolean(h: Dict[str, Any], key: str, default: bool = False) -> bool:
    if _missing(h, key):
        return default
    value = h[key]
    if not isinstance(value, bool):
        raise FieldError("%s must be true or false" % key)
    return value


def name(h: Dict[str, Any], key: str) -> Optional[str]:
    """A process or session name: one path component of letters, digits, ``.``, ``_``, ``-``.

    Names become directories under the agent's own directory, so a ``/`` or a ``..`` would let
    a request write elsewhere (an ``exec`` named ``../../x`` once truncated a file outside it).
    """
    if _missing(h, key):
        return None
    value = h[key]
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise FieldError("%s must be 1-128 letters, digits, '.', '_' or '-', not starting with '.'" % key)
    return value


def string_map(h: Dict[str, Any], key: str, max_items: int = 4096) -> Dict[str, str]:
    if _missing(h, key):
        return {}
    value = h[key]
    if (
        not isinstance(value, dict)
        or len(value) > max_items
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        or any("\x00" in k or "=" in k or not k or "\x00" in v for k, v in value.items())
    ):
        raise FieldError("%s must be an object of strings (no '=' or NUL in names)" % key)
    return dict(value)


def digest(value: Any, what: str = "digest") -> str:
    if not isinstance(value, str) or not HEX64_RE.match(value):
        raise FieldError("%s must be 64 lowercase hex digits" % what)
    return value


def mode(value: Any, what: str = "mode") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o7777:
        raise FieldError("%s must be an integer from 0 to 0o7777" % what)
    return value


def blobs(h: Dict[str, Any], key: str, payload_len: int, offset: int = 0) -> List[List[Any]]:
    """``[[digest, length, compressed, mode], ...]`` whose lengths fit the payload after ``offset``."""
    if _missing(h, key):
        return []
    value = h[key]
    if not isinstance(value, list):
        raise FieldError("%s must be a list" % key)
    out: List[List[Any]] = []
    total = offset
    for item in value:
        if not isinstance(item, list) or len(item) != 4:
            raise FieldError("%s entries must be [digest, length, compressed, mode]" % key)
        length = item[1]
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise FieldError("%s: length must be a non-negative integer" % key)
        if not isinstance(item[2], bool):
            raise FieldError("%s: compressed must be true or false" % key)
        out.append([digest(item[0]), length, item[2], mode(item[3])])
        total += length
    if total > payload_len:
        raise FieldError("%s describe %d bytes but the payload holds %d" % (key, total, payload_len))
    return out


def wants(h: Dict[str, Any], key: str, max_items: int) -> List[List[Any]]:
    """``[[digest, mode], ...]``: content-store objects asked for by digest and mode bits."""
    if _missing(h, key):
        return []
    value = h[key]
    if not isinstance(value, list) or len(value) > max_items:
        raise FieldError("%s must be a list of at most %d [digest, mode] pairs" % (key, max_items))
    out: List[List[Any]] = []
    for item in value:
        if not isinstance(item, list) or len(item) != 2:
            raise FieldError("%s entries must be [digest, mode]" % key)
        out.append([digest(item[0]), mode(item[1])])
    return out
