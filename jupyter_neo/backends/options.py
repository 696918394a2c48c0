"""Validation of a cluster entry's ``options:`` mapping, shared by the backends that have one.

A typo fails when the backend is first used, with the cluster's name, the bad key and the fix,
never later inside a remote command.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from jupyter_neo.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def validate_options(model: type[M], cluster_name: str, options: dict[str, Any], hint: str) -> M:
    """``options`` as ``model``, or a ConfigError ``cluster 'x': options.key: problem``."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "options"
        raise ConfigError(f"cluster {cluster_name!r}: options.{where}: {err['msg']}", hint) from None
