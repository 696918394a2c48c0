"""The layering of docs/architecture.md, checked on the imports themselves.

- Surfaces (the CLI's commands, the magics and widget) reach the core only through the Python API
  (``jupyter_neo.client``) and value types, never the core's internals.
- The thin ``neo`` client imports nothing heavy: a real interpreter imports it and the modules
  pydantic, rich, the kubernetes client, torch and the core must be absent.
- The agent (shipped into pods, stdlib only) never imports the controller's package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SURFACES = [
    *sorted((ROOT / "jupyter_neo" / "cli").glob("*.py")),
    ROOT / "jupyter_neo" / "magics.py",
    ROOT / "jupyter_neo" / "widgets.py",
]
# (placement's Candidate is the value type Client.explain returns: not listed)
CORE_INTERNALS = (
    "jupyter_neo.core",
    "jupyter_neo.store",
    "jupyter_neo.backends",
    "jupyter_neo.transport",
    "jupyter_neo.sync.push",
    "jupyter_neo.sync.manifest",
    "jupyter_neo.sync.tracker",
    "jupyter_neo.runs.supervisor",
    "jupyter_neo.runs.launch",
    "jupyter_neo.controller.daemon",
)


def imports(path: Path, *, optional: bool = True) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included).

    ``optional=False`` leaves out imports guarded by ``except ImportError`` (the rank worker
    uses the real ``jupyter_neo.keep`` when the user's environment has it, else a stub).
    """
    tree = ast.parse(path.read_text(), str(path))
    guarded: set[int] = set()
    if not optional:
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers
            ):
                guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", SURFACES, ids=lambda p: str(p.relative_to(ROOT)))
def test_surfaces_do_not_import_core_internals(path: Path) -> None:
    bad = sorted(m for m in imports(path) if m.startswith(CORE_INTERNALS))
    assert not bad, f"{path.name} imports core internals {bad}; call jupyter_neo.client.Client instead"


def test_the_agent_does_not_import_the_package() -> None:
    for path in (ROOT / "server" / "neo_agent").glob("*.py"):
        bad = sorted(m for m in imports(path, optional=False) if m.split(".")[0] == "jupyter_neo")
        assert not bad, f"{path.name} imports {bad}: the agent is stdlib-only and shipped alone"


def test_the_thin_cli_imports_nothing_heavy() -> None:
    heavy = [
        "pydantic",
        "rich",
        "kubernetes",
        "torch",
        "yaml",
        "psutil",
        "jupyter_neo.core",
        "jupyter_neo.client",
    ]
    code = (
        "import sys, jupyter_neo.cli.main, jupyter_neo.controller.client, jupyter_neo.controller.manage\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"the thin client imported {out.strip()}"
