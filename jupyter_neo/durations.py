"""Human durations (``90s``, ``30m``, ``1h30m``, ``2d``) to seconds and back."""

from __future__ import annotations

import re

from jupyter_neo.errors import InvalidRequest

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str | float | int | None) -> float | None:
    """Parse a duration; ``None``, ``"none"`` and ``"0"`` mean no limit. Plain numbers are seconds."""
    if text is None:
        return None
    if isinstance(text, int | float):
        if text < 0:
            raise InvalidRequest(f"duration {text} is negative", "use a positive duration such as 30m")
        return float(text) or None
    raw = text.strip().lower()
    if raw in ("", "none", "never", "0"):
        return None
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if value < 0:
            raise InvalidRequest(f"duration {text!r} is negative", "use a positive duration such as 30m")
        return value or None
    pos = 0
    total = 0.0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or pos == 0:
        raise InvalidRequest(
            f"cannot read duration {text!r}", "write it like 90s, 30m, 1h30m or 2d (or 'none' for no limit)"
        )
    return total


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
