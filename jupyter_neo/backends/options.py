"""Validation of a cluster entry's ``options:`` mapping, shared by the backends that have one.

A typo fails when the backend is first used, with the cluster's name, the bad key and the fix,
never later inside a remote command.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from jupyter_neo.durations import parse_duration
from jupyter_neo.errors import ConfigError, InvalidRequest

M = TypeVar("M", bound=BaseModel)


def validate_options(
    model: type[M], cluster_name: str, options: dict[str, Any], hint: str, durations: tuple[str, ...] = ()
) -> M:
    """``options`` as ``model``, or a ConfigError ``cluster 'x': options.key: problem``.

    ``durations`` name fields holding a human duration (``30s``, ``5m``), checked here too.
    """
    try:
        parsed = model.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "options"
        raise ConfigError(f"cluster {cluster_name!r}: options.{where}: {err['msg']}", hint) from None
    for key in durations:
        try:
            parse_duration(getattr(parsed, key))
        except InvalidRequest as exc:
            raise ConfigError(f"cluster {cluster_name!r}: options.{key}: {exc.message}", hint) from None
    return parsed
