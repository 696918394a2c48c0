"""``options:`` of a ``backend: slurm`` cluster entry, validated when the backend is first used.

Only what a site's ``salloc`` line needs (partition, account, QoS, GRES name, time limit,
constraint) plus how to reach Slurm (``env`` for ``SLURM_CONF``, ``login`` for SSH) and where pods
live on the node. A typo fails with the cluster's name and the accepted keys, never at ``salloc``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jupyter_neo.backends.options import validate_options
from jupyter_neo.durations import parse_duration

# Slurm's --time forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, or UNLIMITED.
_TIME_RE = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$|^(?i:unlimited|infinite)$")
# Partition/account/qos/feature names: no spaces, quotes or shell metacharacters (they reach argv
# only, but a stray space is always a config mistake worth reporting early).
_WORD_RE = re.compile(r"^[A-Za-z0-9_.:@+\-\[\]&|,*!()]+$")


class SlurmOptions(BaseModel):
    """Backend settings; every field maps onto one ``salloc`` flag or one connection detail."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(default=None, description="salloc --partition")
    account: str | None = Field(default=None, description="salloc --account")
    qos: str | None = Field(default=None, description="salloc --qos")
    gres: str = Field(default="gpu", description="GRES name (and type): --gres=<gres>:<gpus per node>")
    time_limit: str | None = Field(default=None, description="salloc --time, Slurm syntax (4:00:00, 1-0)")
    constraint: str | None = Field(default=None, description="salloc --constraint (e.g. the IB fabric)")
    salloc_args: list[str] = Field(default_factory=list, description="extra salloc flags, one per item")
    pending_timeout: str | float = Field(
        default="5m", description="give up (scancel) after pending this long"
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="environment for Slurm commands (SLURM_CONF)"
    )
    login: str | None = Field(default=None, description="user@host: run Slurm commands there over ssh")
    ssh_options: list[str] = Field(default_factory=list, description="extra ssh arguments (-p 2222, -J jump)")
    base_dir: str = Field(
        default="/tmp/jupyter-neo-{user}",
        description="node-local directory for pods; {user} is the reservation owner",
    )
    python: str = Field(default="python3", description="python on the compute nodes")

    @field_validator("partition", "account", "qos", "constraint", "gres")
    @classmethod
    def _word(cls, value: str | None) -> str | None:
        if value is not None and not _WORD_RE.match(value):
            raise ValueError(f"{value!r} is not a Slurm name (no spaces or quotes)")
        return value

    @field_validator("time_limit", mode="before")
    @classmethod
    def _minutes(cls, value: object) -> object:
        """YAML reads ``time_limit: 90`` as a number: Slurm means minutes, and so do we."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("time_limit")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None and not _TIME_RE.match(value.strip()):
            raise ValueError(f"{value!r} is not a Slurm time limit (use e.g. 30, 4:00:00 or 1-12:00:00)")
        return value.strip() if value is not None else None

    @field_validator("base_dir")
    @classmethod
    def _abs(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("base_dir must be an absolute path on the compute nodes")
        return value.rstrip("/")

    @field_validator("salloc_args")
    @classmethod
    def _flags(cls, value: list[str]) -> list[str]:
        for arg in value:
            if not arg.startswith("-"):
                raise ValueError(f"salloc_args items are flags such as --exclusive, not {arg!r}")
        return value

    @property
    def pending_timeout_s(self) -> float:
        return parse_duration(self.pending_timeout) or 0.0


def slurm_minutes(limit: str) -> float | None:
    """Minutes in a Slurm time limit (``90``, ``4:00:00``, ``1-12``...); None for UNLIMITED."""
    if limit.lower() in ("unlimited", "infinite"):
        return None
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # D-H, D-H:M, D-H:M:S
        h, m, sec = [*parts, 0, 0][:3]
        return int(days) * 1440 + h * 60 + m + sec / 60
    if len(parts) == 1:
        return float(parts[0])
    if len(parts) == 2:  # M:S
        return parts[0] + parts[1] / 60
    return parts[0] * 60 + parts[1] + parts[2] / 60


def parse_options(cluster_name: str, options: dict[str, Any]) -> SlurmOptions:
    """Validate a cluster's ``options`` mapping into :class:`SlurmOptions` or raise ConfigError."""
    keys = ", ".join(SlurmOptions.model_fields)
    hint = f"slurm options are: {keys} (see docs/slurm.md)"
    return validate_options(SlurmOptions, cluster_name, options, hint, durations=("pending_timeout",))
