"""Where state lives and which clusters exist.

``$NEO_HOME`` (default: the user's data dir) holds the state store and the local backend's pods.
``$NEO_CONFIG`` (default: ``neo.yaml`` in the user's config dir) lists clusters. With no file there
is one built-in cluster, ``local``: 4 nodes x 8 virtual GPUs, so examples written for ``--gpus 32``
run unchanged on a laptop. Errors point at the line of the file that is wrong.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jupyter_neo.durations import parse_duration
from jupyter_neo.errors import ConfigError, StateError
from jupyter_neo.model import Cluster

DEFAULT_LOCAL = Cluster(
    name="local", backend="local", provider="local", region="local", nodes=4, gpus_per_node=8
)


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    idle_ttl: str | float | None = "30m"
    residency: list[str] = Field(default_factory=list)
    user_budget: float | None = Field(default=None, gt=0)


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clusters: list[Cluster] = Field(default_factory=lambda: [DEFAULT_LOCAL])
    defaults: Defaults = Field(default_factory=Defaults)


@dataclass(frozen=True)
class Config:
    """The resolved configuration of one controller process."""

    home: Path
    clusters: tuple[Cluster, ...]
    defaults: Defaults = field(default_factory=Defaults)
    source: Path | None = None

    @property
    def default_idle_ttl(self) -> float | None:
        return parse_duration(self.defaults.idle_ttl)

    def cluster(self, name: str) -> Cluster:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        from jupyter_neo.errors import InvalidRequest

        names = ", ".join(c.name for c in self.clusters)
        raise InvalidRequest(f"unknown cluster {name!r}", f"configured clusters: {names}")


def default_home() -> Path:
    return Path(os.environ.get("NEO_HOME") or platformdirs.user_data_dir("jupyter-neo"))


def default_config_path() -> Path:
    return Path(
        os.environ.get("NEO_CONFIG") or Path(platformdirs.user_config_dir("jupyter-neo")) / "neo.yaml"
    )


def config_path_for(env: dict[str, str]) -> tuple[Path, bool]:
    """The config file another process's environment names, and whether it named it explicitly.

    The controller serves clients whose ``NEO_CONFIG`` / ``XDG_CONFIG_HOME`` may differ from its own.
    """
    if env.get("NEO_CONFIG"):
        return Path(env["NEO_CONFIG"]), True
    if sys.platform.startswith("linux") or env.get("XDG_CONFIG_HOME"):
        base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        return base / "jupyter-neo" / "neo.yaml", False
    return Path(platformdirs.user_config_dir("jupyter-neo")) / "neo.yaml", False


def load_config(path: Path | None = None, home: Path | None = None) -> Config:
    """Read the cluster file (if any) and prepare the state directory."""
    home = home or default_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise StateError(
            f"cannot use state directory {home}: {exc.strerror or exc}",
            "set NEO_HOME to a writable directory",
        ) from None
    explicit = path is not None or "NEO_CONFIG" in os.environ
    path = path or default_config_path()
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist", "create it or unset NEO_CONFIG")
        return Config(home=home, clusters=(DEFAULT_LOCAL,))
    parsed = parse_config_text(path.read_text(encoding="utf-8"), str(path))
    return Config(home=home, clusters=tuple(parsed.clusters), defaults=parsed.defaults, source=path)


def parse_config_text(text: str, source: str = "<config>") -> ConfigFile:
    """Validate a YAML cluster file, reporting errors as ``file:line: what``."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: expected a mapping with a 'clusters:' list")
    try:
        parsed = ConfigFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        line = _line_of(node, err["loc"])
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"{source}:{line}: {loc}: {err['msg']}", "see docs/configuration.md for the cluster file format"
        ) from None
    names = [c.name for c in parsed.clusters]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"{source}: cluster name {dupes[0]!r} is used twice", "cluster names must be unique"
        )
    try:
        parse_duration(parsed.defaults.idle_ttl)
    except Exception as exc:
        raise ConfigError(f"{source}: defaults.idle_ttl: {exc}") from None
    return parsed


def _line_of(node: Any, loc: tuple[Any, ...]) -> int:
    """Follow a pydantic error location through the YAML node tree to a 1-based line number."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    node = value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return line
        line = node.start_mark.line + 1
    return line
