"""Which files of a workspace are synced: git's rules, ``.neoignore``, and a few defaults.

The file set is the one ``git ls-files -co --exclude-standard`` would give (nested
``.gitignore`` files, ``.git/info/exclude``; deeper files override shallower ones, the last
matching line of a file wins, ``!`` re-includes), minus ``.neoignore`` patterns (read like a
``.gitignore`` in the same directory, after it), minus defaults nobody wants in a pod:
``.git/``, ``__pycache__/``, ``.ipynb_checkpoints/``, ``node_modules/`` and virtualenvs (any
directory holding ``pyvenv.cfg``). Defaults have the lowest precedence, so ``!node_modules/`` in
a ``.neoignore`` brings them back; ``.git`` itself is never synced. Matching uses pathspec's
``GitIgnoreSpec`` (gitwildmatch), the maintained implementation of git's rules.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pathspec

DEFAULT_PATTERNS = (
    "__pycache__/",
    ".ipynb_checkpoints/",
    "node_modules/",
    ".venv/",
    "venv/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".*.swp",
    ".#*",
)
IGNORE_FILES = (".gitignore", ".neoignore")


@dataclass(frozen=True)
class _Spec:
    spec: pathspec.GitIgnoreSpec
    sources: tuple[str, ...]  # "file:line: pattern" per line, for dry-run explanations
    # All of the spec's patterns in one regex: most paths match none, and one C-level search
    # says so ~10x faster than asking every pattern (a 20k-file walk asks 20k times).
    any_pattern: re.Pattern[str] | None

    def check(self, path: str) -> pathspec.util.CheckResult[str] | None:
        if self.any_pattern is not None and self.any_pattern.search(path) is None:
            return None
        return self.spec.check_file(path)


def _combined(spec: pathspec.GitIgnoreSpec) -> re.Pattern[str] | None:
    parts = []
    for pattern in spec.patterns:
        regex = getattr(pattern, "regex", None)
        if getattr(pattern, "include", None) is None:
            continue
        if regex is None:
            return None  # an unknown pattern kind: always ask pathspec
        parts.append("(?:" + re.sub(r"\(\?P<\w+>", "(?:", regex.pattern) + ")")
    try:
        return re.compile("|".join(parts)) if parts else re.compile(r"(?!)")
    except re.error:
        return None


def _spec(lines: list[tuple[str, str]]) -> _Spec | None:
    if not lines:
        return None
    spec = pathspec.GitIgnoreSpec.from_lines([line for line, _ in lines])
    return _Spec(spec, tuple(src for _, src in lines), _combined(spec))


def _read(path: Path, label: str) -> list[tuple[str, str]]:
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        return []
    return [(line, f"{label}:{n}: {line.strip()}") for n, line in enumerate(text.splitlines(), 1)]


class IgnoreRules:
    """Ignore decisions for one workspace root; specs are loaded per directory and cached."""

    def __init__(self, root: Path) -> None:
        self.root = root
        base = [(p, f"default: {p}") for p in DEFAULT_PATTERNS]
        base += _read(root / ".git" / "info" / "exclude", ".git/info/exclude")
        self._base = _spec(base)
        self._dirs: dict[str, _Spec | None] = {}

    def invalidate(self) -> None:
        """Forget loaded ignore files (one of them changed)."""
        self._dirs.clear()

    @staticmethod
    def is_rule_file(rel: str) -> bool:
        return rel.rpartition("/")[2] in IGNORE_FILES or rel == ".git/info/exclude"

    def _for_dir(self, rel_dir: str) -> _Spec | None:
        if rel_dir not in self._dirs:
            lines: list[tuple[str, str]] = []
            for name in IGNORE_FILES:
                label = f"{rel_dir}/{name}" if rel_dir else name
                lines += _read(self.root / rel_dir / name, label)
            self._dirs[rel_dir] = _spec(lines)
        return self._dirs[rel_dir]

    def reason(self, rel: str, is_dir: bool) -> str | None:
        """Why ``rel`` is ignored (the matching rule), or None when it is synced.

        Only the path's own name is judged; callers walking the tree prune ignored directories,
        and :meth:`reason_with_parents` also judges every parent (for watcher events).
        """
        name = rel.rpartition("/")[2]
        if name == ".git":
            return "default: .git/ (never synced)"
        if is_dir and os.path.exists(os.path.join(self.root, rel, "pyvenv.cfg")):
            return "default: virtualenv (holds pyvenv.cfg)"
        probe_suffix = "/" if is_dir else ""
        parts = rel.split("/")
        for depth in range(len(parts) - 1, -1, -1):
            spec = self._for_dir("/".join(parts[:depth]))
            if spec is None:
                continue
            result = spec.check("/".join(parts[depth:]) + probe_suffix)
            if result is not None and result.include is not None:
                return spec.sources[result.index] if result.include and result.index is not None else None
        if self._base is not None:
            result = self._base.check(rel + probe_suffix)
            if result is not None and result.include and result.index is not None:
                return self._base.sources[result.index]
        return None

    def reason_with_parents(self, rel: str, is_dir: bool) -> str | None:
        """Like :meth:`reason`, but a path below an ignored directory is ignored too."""
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            why = self.reason("/".join(parts[:depth]), True)
            if why is not None:
                return why
        return self.reason(rel, is_dir)
