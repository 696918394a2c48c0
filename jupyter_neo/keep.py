"""``jupyter_neo.keep(name, factory)``: hold expensive objects across hot reloads.

Inside a ``neo run --hot`` worker the registry lives in the worker process, outside every module
that a reload replaces, so model weights, datasets and tokenizers are built once and survive edits.
Anywhere else it is a plain in-process cache, so the same script runs unchanged without neo.
"""

from __future__ import annotations

import builtins

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on every rank and CLI start
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")
_LOCAL: dict[str, Any] = {}


def keep(name: str, factory: Callable[[], T]) -> T:
    """Return the object kept under ``name``, building it with ``factory()`` the first time."""
    registry: dict[str, Any] = getattr(builtins, "__neo_keep__", None) or _LOCAL
    if name not in registry:
        registry[name] = factory()
    value: T = registry[name]
    return value
