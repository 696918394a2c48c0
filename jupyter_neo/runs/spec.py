"""What to run and how to launch it on each node (torchrun, or a plain command per node)."""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jupyter_neo.errors import InvalidRequest

# torchrun prints every worker line prefixed with this template (see TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE),
# which is how one stream per node is split back into one stream per global rank.
RANK_PREFIX_TEMPLATE = "[neo-rank ${rank}]:"
DEFAULT_ENV = {"PYTHONUNBUFFERED": "1", "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE": RANK_PREFIX_TEMPLATE}


RunKind = Literal["script", "module", "cmd", "check"]


@dataclass
class RunSpec:
    """A run request, validated against the local workspace before anything starts."""

    kind: RunKind
    target: str
    args: list[str] = field(default_factory=list)
    nproc_per_node: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    workspace: Path = field(default_factory=Path.cwd)
    sync: bool = True
    grace: float = 5.0
    hot: bool = False

    def fingerprint(self, nodes: int, nproc: int) -> str:
        """The world a hot session was launched with (shape and environment); a change needs a
        cold restart. The script and its arguments are not in it: workers switch to a new entry
        point at the next generation."""
        doc = [nproc, nodes, sorted(self.env.items())]
        return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]

    def validate(self) -> None:
        if self.kind == "script":
            script = (self.workspace / self.target).resolve()
            root = self.workspace.resolve()
            if not script.is_file():
                raise InvalidRequest(
                    f"script {self.target!r} not found in {root}",
                    "pass a path relative to the workspace (the current directory)",
                )
            if root not in script.parents:
                raise InvalidRequest(
                    f"script {self.target!r} is outside the workspace {root}",
                    "run from a directory that contains the script",
                )
        if self.nproc_per_node is not None and self.nproc_per_node < 1:
            raise InvalidRequest("--nproc-per-node must be at least 1")
        for key in self.env:
            if not key or "=" in key or not key.replace("_", "").isalnum():
                raise InvalidRequest(f"bad environment variable name {key!r}", "use --env NAME=value")

    @property
    def launcher(self) -> Literal["torchrun", "plain"]:
        return "plain" if self.kind == "cmd" else "torchrun"

    def command(self) -> list[str]:
        """The user's command as recorded in the run (what a person would type)."""
        if self.kind == "script":
            return [self.target, *self.args]
        if self.kind == "module":
            return ["-m", self.target, *self.args]
        if self.kind == "cmd":
            return shlex.split(self.target) + self.args
        return ["neo-check"]


def parse_env(pairs: list[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidRequest(f"--env {pair!r} is not NAME=value")
        env[key] = value
    return env
