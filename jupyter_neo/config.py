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
from typing import Any, NoReturn

import platformdirs
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jupyter_neo.datasets.spec import Dataset, Transfer
from jupyter_neo.durations import parse_duration
from jupyter_neo.errors import ConfigError, StateError
from jupyter_neo.model import Cluster
from jupyter_neo.money import USD
from jupyter_neo.private import private_dir

DEFAULT_LOCAL = Cluster(
    name="local", backend="local", provider="local", region="local", nodes=4, gpus_per_node=8
)


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    idle_ttl: str | float | None = "30m"
    residency: list[str] = Field(default_factory=list)
    user_budget: USD | None = None
    run_lease: str | float = "60s"
    """A supervised run's pods stop it after this long without a heartbeat from its controller."""


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clusters: list[Cluster] = Field(default_factory=lambda: [DEFAULT_LOCAL])
    defaults: Defaults = Field(default_factory=Defaults)
    datasets: list[Dataset] = Field(default_factory=list)
    transfer: Transfer = Field(default_factory=Transfer)


@dataclass(frozen=True)
class Config:
    """The resolved configuration of one controller process."""

    home: Path
    clusters: tuple[Cluster, ...]
    defaults: Defaults = field(default_factory=Defaults)
    source: Path | None = None
    datasets: tuple[Dataset, ...] = ()
    transfer: Transfer = field(default_factory=Transfer)

    @property
    def dataset_map(self) -> dict[str, Dataset]:
        return {d.name: d for d in self.datasets}

    @property
    def default_idle_ttl(self) -> float | None:
        return parse_duration(self.defaults.idle_ttl)

    @property
    def run_lease(self) -> float:
        """``$NEO_RUN_LEASE`` (tests, one-off overrides), else ``defaults.run_lease``; at least 1 s."""
        text = os.environ.get("NEO_RUN_LEASE") or self.defaults.run_lease
        return max(1.0, parse_duration(text) or 60.0)

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
        if not home.is_dir():
            private_dir(home)  # every reservation's secret lives here: owner-only from the start
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
    return Config(
        home=home,
        clusters=tuple(parsed.clusters),
        defaults=parsed.defaults,
        source=path,
        datasets=tuple(relative_to(d, path.parent, parsed.clusters) for d in parsed.datasets),
        transfer=parsed.transfer,
    )


def relative_to(dataset: Dataset, base: Path, clusters: list[Cluster]) -> Dataset:
    """A local cluster's relative folder is read against the configuration file's folder (so an
    example estate can carry its data); paths on remote nodes are left exactly as written."""
    local = {c.name for c in clusters if c.backend == "local"}
    locations = [
        loc.model_copy(update={"path": str((base / loc.path).resolve())})
        if loc.cluster in local and loc.path is not None and not Path(loc.path).expanduser().is_absolute()
        else loc
        for loc in dataset.locations
    ]
    return dataset.model_copy(update={"locations": locations})


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
    try:
        parse_duration(parsed.defaults.run_lease)
    except Exception as exc:
        raise ConfigError(f"{source}: defaults.run_lease: {exc}") from None
    check_datasets(parsed, node, source)
    return parsed


def check_datasets(parsed: ConfigFile, node: Any, source: str) -> None:
    """What a schema cannot say about ``datasets:``: names unique, locations on real clusters of the
    right backend, residency some cluster satisfies, a place to copy from; ``transfer.horizon`` a
    duration. Each error points at its line."""

    def fail(loc: tuple[Any, ...], problem: str, hint: str = "see docs/datasets.md") -> NoReturn:
        where = ".".join(str(p) for p in loc)
        raise ConfigError(f"{source}:{_line_of(node, loc)}: {where}: {problem}", hint)

    clusters = {c.name: c for c in parsed.clusters}
    seen: set[str] = set()
    for i, ds in enumerate(parsed.datasets):
        if ds.name in seen:
            fail(
                ("datasets", i, "name"),
                f"dataset name {ds.name!r} is used twice",
                "dataset names must be unique",
            )
        seen.add(ds.name)
        if ds.residency and not any(ds.may_live_in(c.residency) for c in clusters.values()):
            fail(
                ("datasets", i, "residency"),
                f"no configured cluster satisfies residency {ds.residency}",
                "clusters carry residency tags: "
                + ", ".join(f"{c.name} {c.residency}" for c in clusters.values()),
            )
        if not ds.locations and ds.bucket is None:
            fail(("datasets", i), f"dataset {ds.name!r} has no locations and no bucket", "say where it lives")
        for j, loc in enumerate(ds.locations):
            at = ("datasets", i, "locations", j, "cluster")
            cluster = clusters.get(loc.cluster)
            if cluster is None:
                fail(at, f"no cluster named {loc.cluster!r}", "configured clusters: " + ", ".join(clusters))
            kube = cluster.backend == "kubernetes"
            if kube == (loc.kind == "path"):
                want = "pvc, nfs or host_path" if kube else "path"
                fail(at, f"cluster {loc.cluster!r} is {cluster.backend}: its locations are a {want}")
            if not ds.may_live_in(cluster.residency):
                fail(
                    at,
                    f"{loc.cluster!r} ({cluster.residency}) is outside the dataset's residency {ds.residency}",
                )
    try:
        horizon = parse_duration(parsed.transfer.horizon)
    except Exception as exc:
        fail(("transfer", "horizon"), str(exc).splitlines()[0])
    else:
        if not horizon:
            fail(("transfer", "horizon"), "must be a positive duration such as 8h")


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
