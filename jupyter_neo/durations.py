"""Human durations (``90s``, ``30m``, ``1h30m``, ``2d``) to seconds and back.

This is the one place a duration from any surface (CLI flag, ``%neo`` magic, REST body, config
file) is read, so every surface refuses the same things the same way: a type that is not a
string or a number, ``nan``/``inf``, negative values and values past :data:`MAX_SECONDS` (which
would overflow a ``datetime`` deadline later and surface as a traceback far from the input).
Zero in any spelling (``0``, ``"0"``, ``"0s"``, ``"0h0m"``) means *no limit*, like ``none``.
"""

from __future__ import annotations

import math
import re

from jupyter_neo.errors import InvalidRequest

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
MAX_SECONDS = 3650 * 86400.0
"""Ten years: longer than any lease or window anyone means, far below ``datetime``'s limits."""
_HINT = "write it like 90s, 30m, 1h30m or 2d (or 'none' for no limit)"


def parse_duration(text: object) -> float | None:
    """Seconds for ``text``; ``None`` means no limit (``None``, ``"none"``, any zero).

    Plain numbers (and numeric strings) are seconds.
    """
    if text is None:
        return None
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise InvalidRequest(
            f"a duration must be a string like '30m' or a number of seconds (got {text!r})", _HINT
        )
    if isinstance(text, int | float):
        try:
            return _checked(float(text), text)
        except OverflowError:  # an int beyond float range
            return _checked(math.inf, text)
    raw = text.strip().lower()
    if raw in ("", "none", "never"):
        return None
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        return _checked(value, text)
    pos = 0
    total = 0.0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or pos == 0:
        raise InvalidRequest(f"cannot read duration {text!r}", _HINT)
    return _checked(total, text)


def _checked(seconds: float, given: object) -> float | None:
    if math.isnan(seconds) or math.isinf(seconds):
        raise InvalidRequest(f"duration {given!r} is not a finite time", _HINT)
    if seconds < 0:
        raise InvalidRequest(f"duration {given!r} is negative", "use a positive duration such as 30m")
    if seconds > MAX_SECONDS:
        raise InvalidRequest(f"duration {given!r} is longer than 10 years", "use 'none' for no limit")
    return seconds or None


def format_duration(seconds: float | None) -> str:
    """Compact form for tables: ``1h05m``, ``4m10s``, ``12s``; ``-`` for no limit."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s >= 86400:
        return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
