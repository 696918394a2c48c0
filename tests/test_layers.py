"""The layering of docs/architecture.md, checked on the imports themselves.

Every import counts, at any depth: function-level ones and those under ``if TYPE_CHECKING`` (a
cycle hidden from the interpreter is still a cycle in the design). Why a test and not
import-linter: docs/architecture.md ("What keeps the layers").

- Surfaces (the CLI's commands, the magics and widget) reach the core only through the Python API
  (``jupyter_neo.client``) and value types, never the core's internals; the CLI's commands import
  only an allowed list of modules.
- The core never imports a surface (the CLI, the server extension, magics, widgets, the Python
  API, the controller daemon); below it, sync/ and runs/ see the core only through hosts.py's
  protocols, backends never import the core, sync or runs, and transport only itself and errors.
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
    *sorted((ROOT / "jupyter_neo" / "server").glob("*.py")),
    ROOT / "jupyter_neo" / "magics.py",
    ROOT / "jupyter_neo" / "px_magics.py",
    ROOT / "jupyter_neo" / "kernel_surface.py",
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


PACKAGE = ROOT / "jupyter_neo"
SURFACE_MODULES = (
    "jupyter_neo.cli",
    "jupyter_neo.server",
    "jupyter_neo.magics",
    "jupyter_neo.kernel_surface",
    "jupyter_neo.widgets",
    "jupyter_neo.px_magics",
    "jupyter_neo.client",
    "jupyter_neo.interactive",
    "jupyter_neo.controller",
)
# What the CLI's command modules may import: the API, value types and their parsers, output
# helpers, and the thin client that forwards a command line to the controller.
CLI_ALLOWED = (
    "jupyter_neo.cli",
    "jupyter_neo.client",
    "jupyter_neo.model",
    "jupyter_neo.errors",
    "jupyter_neo.errorlog",
    "jupyter_neo.durations",
    "jupyter_neo.money",
    "jupyter_neo.placement.Candidate",
    "jupyter_neo.sync.report",
    "jupyter_neo.runs.spec",
    "jupyter_neo.controller.client",
    "jupyter_neo.controller.manage",
    "jupyter_neo.controller.terminal",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "labextension" not in p.parts)


def core_files() -> list[Path]:
    """Every module of the package that is not a surface (nor the package's entry-point hooks)."""
    return [
        p
        for p in package_files()
        if module_name(p) != "jupyter_neo" and not module_name(p).startswith(SURFACE_MODULES)
    ]


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# (the files a rule covers, the modules they must not import, what to do instead)
LOWER_LAYERS: list[tuple[str, tuple[str, ...], tuple[str, ...], str]] = [
    (
        "core",
        (),
        SURFACE_MODULES,
        "the core serves every surface and never calls one back; return values or take a callback",
    ),
    (
        "sync and runs",
        ("jupyter_neo.sync", "jupyter_neo.runs"),
        ("jupyter_neo.core", "jupyter_neo.backends", "jupyter_neo.store"),
        "take what you need through a protocol in jupyter_neo/hosts.py (SyncHost, RunHost)",
    ),
    (
        "backends",
        ("jupyter_neo.backends",),
        ("jupyter_neo.core", "jupyter_neo.sync", "jupyter_neo.runs", "jupyter_neo.hosts"),
        "a backend holds pods and opens streams; the core drives it",
    ),
    (
        "transport",
        ("jupyter_neo.transport",),
        tuple(
            m
            for m in {module_name(p) for p in package_files()}
            if m != "jupyter_neo" and not within(m, ("jupyter_neo.transport", "jupyter_neo.errors"))
        ),
        "transport moves bytes to agents and knows nothing above it",
    ),
]


@pytest.mark.parametrize("rule", LOWER_LAYERS, ids=lambda r: r[0])
def test_lower_layers_do_not_import_upper_ones(
    rule: tuple[str, tuple[str, ...], tuple[str, ...], str],
) -> None:
    name, covered, forbidden, fix = rule
    files = [p for p in core_files() if not covered or within(module_name(p), covered)]
    assert files, f"rule {name!r} covers no file"
    bad = {str(p.relative_to(ROOT)): sorted(m for m in imports(p) if within(m, forbidden)) for p in files}
    bad = {f: ms for f, ms in bad.items() if ms}
    assert not bad, f"{name} imports a layer above it: {bad}; {fix}"


@pytest.mark.parametrize(
    "path", sorted((ROOT / "jupyter_neo" / "cli").glob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_cli_imports_only_the_api_and_value_types(path: Path) -> None:
    bad = sorted(
        m
        for m in imports(path)
        if m.split(".")[0] == "jupyter_neo"
        and not within(m, CLI_ALLOWED)
        and not any(a.startswith(m + ".") for a in CLI_ALLOWED)  # ``from jupyter_neo.placement import``
    )
    assert not bad, f"{path.name} imports {bad}; add a verb to jupyter_neo.client.Client and call that"


def test_the_rules_would_catch_a_violation(tmp_path: Path) -> None:
    """The checker itself: an import under TYPE_CHECKING and one inside a function both count."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from jupyter_neo.core import Core\n"
        "def f():\n    import jupyter_neo.cli.app\n"
    )
    assert {"jupyter_neo.core.Core", "jupyter_neo.cli.app"} <= imports(sample)


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


def test_a_forwarded_command_imports_no_stdlib_wrapper_it_can_do_without() -> None:
    """json (its import compiles ``re`` patterns), socket and signal (enum-wrapped constants) cost
    ~12 ms together; a forwarded command needs only their C modules (docs/protocol.md)."""
    avoid = ["json", "re", "socket", "signal", "enum", "typing"]
    code = f"import sys, jupyter_neo.cli.main, jupyter_neo.controller.client\nprint([m for m in {avoid!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    ).stdout
    assert out.strip() == "[]", f"the per-command path imported {out.strip()}"


def test_the_controller_preloads_its_own_modules_but_no_jupyter_surface() -> None:
    """``pkgutil.walk_packages`` imports each package it enters: it used to pull ``jupyter_server``
    (~1,000 modules) and, through the ``%%px`` magics, IPython into every controller: the first
    command waited 1.8 s instead of 0.35 s, and the controller held 89 MB instead of 49 MB."""
    code = (
        "import sys\nfrom jupyter_neo.controller.daemon import preload\npreload()\n"
        "print(sorted(m for m in ('jupyter_server', 'jupyter_neo.server', 'jupyter_neo.magics',"
        " 'jupyter_neo.px_magics', 'ipywidgets', 'IPython') if m in sys.modules), 'jupyter_neo.sync.push' in sys.modules,"
        " 'jupyter_neo.backends.local' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True True", out
