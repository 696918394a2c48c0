"""``options:`` of a ``backend: ssh`` cluster entry: the hosts and how to reach them.

Every host is an SSH destination exactly as the user would type it (``gpu-3`` from
``~/.ssh/config``, ``ubuntu@10.0.0.12``); user, port, identity and jump host may be set for all
hosts or per host, and are left to ``~/.ssh/config`` when unset. GPUs per host come from
``nvidia-smi`` where it exists, else from ``gpus`` (per host) or the cluster's ``gpus_per_node``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jupyter_neo.backends.options import validate_options
from jupyter_neo.durations import parse_duration

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_DEST_RE = re.compile(r"^[A-Za-z0-9_.@:\[\]%-]+$")


class ConnectionSettings(BaseModel):
    """How to reach a host, beyond what ``~/.ssh/config`` says (each one wins over it when set)."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, description="ssh -l")
    port: int | None = Field(default=None, ge=1, le=65535, description="ssh -p")
    identity: str | None = Field(default=None, description="ssh -i (a private key file)")
    jump: str | None = Field(default=None, description="ssh -J (bastion, user@host[:port][,next])")


class HostEntry(ConnectionSettings):
    """One GPU host of the fleet."""

    address: str = Field(description="ssh destination: an ~/.ssh/config alias, a host name or an IP")
    name: str | None = Field(default=None, description="label in neo clusters and pod names")
    gpus: int | None = Field(default=None, ge=1, description="GPUs on this host (else gpus_per_node)")
    internal_address: str | None = Field(
        default=None, description="address the other hosts reach this one at (torchrun's rendezvous)"
    )

    @field_validator("address", "jump", "internal_address")
    @classmethod
    def _destination(cls, value: str | None) -> str | None:
        if value is not None and not _DEST_RE.match(value):
            raise ValueError(f"{value!r} is not an ssh destination (no spaces or shell characters)")
        return value

    @property
    def label(self) -> str:
        return self.name or self.address.rpartition("@")[2]


class SshOptions(ConnectionSettings):
    """Backend settings of an SSH fleet."""

    hosts: list[HostEntry] = Field(min_length=1, description="the GPU hosts, in any order")
    ssh_config: str | None = Field(default=None, description="ssh -F: a config file instead of ~/.ssh/config")
    ssh_options: list[str] = Field(default_factory=list, description="extra ssh arguments, one per item")
    python: str = Field(default="python3", description="python (>= 3.8) on the hosts")
    base_dir: str = Field(
        default="/tmp/jupyter-neo-{user}", description="where pods live on a host; {user} = the owner"
    )
    lease_dir: str = Field(
        default="/var/tmp/jupyter-neo-gpus", description="GPU lease files, shared by every user of a host"
    )
    lease_ttl: str | float = Field(
        default="60s", description="a lease nobody renews (crashed holder) expires after this long"
    )
    connect_timeout: str | float = Field(default="10s", description="ssh ConnectTimeout")
    multiplex: bool = Field(
        default=True,
        description="share one ssh connection per host (unless ~/.ssh/config sets ControlMaster)",
    )

    @field_validator("hosts", mode="before")
    @classmethod
    def _plain_hosts(cls, value: Any) -> Any:
        """``- gpu-3`` is short for ``- address: gpu-3``."""
        if isinstance(value, list):
            return [{"address": h} if isinstance(h, str) else h for h in value]
        return value

    @field_validator("base_dir", "lease_dir")
    @classmethod
    def _abs(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path on the hosts")
        return value.rstrip("/")

    @field_validator("ssh_options")
    @classmethod
    def _flags(cls, value: list[str]) -> list[str]:
        if value and not value[0].startswith("-"):
            raise ValueError(f"ssh_options are ssh arguments such as -o Compression=yes, not {value[0]!r}")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> SshOptions:
        labels = [h.label for h in self.hosts]
        for label in labels:
            if not _NAME_RE.match(label):
                raise ValueError(f"host name {label!r}: use letters, digits, '.', '_' or '-' (set name:)")
            if labels.count(label) > 1:
                raise ValueError(f"host name {label!r} is used twice (give one of them a name:)")
        return self

    @property
    def lease_ttl_s(self) -> float:
        return parse_duration(self.lease_ttl) or 60.0

    @property
    def connect_timeout_s(self) -> float:
        return parse_duration(self.connect_timeout) or 10.0


def parse_options(cluster_name: str, options: dict[str, Any]) -> SshOptions:
    """Validate a cluster's ``options`` into :class:`SshOptions` or raise ConfigError."""
    keys = ", ".join(SshOptions.model_fields)
    hint = f"ssh options are: {keys} (see docs/ssh.md)"
    return validate_options(
        SshOptions, cluster_name, options, hint, durations=("lease_ttl", "connect_timeout")
    )
