"""Which loaded modules a hot worker forgets before the next generation (neo_agent.hot).

A pod's workspace is ``ws/current -> ws/gens/N``; the worker imports through ``current``. Modules
loaded from the workspace (through ``current`` or a generation's real path) are forgotten; modules
from elsewhere are not, and their real paths are resolved once, not at every reload.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
from neo_agent import hot


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, path: Path) -> None:
    module = types.ModuleType(name)
    module.__file__ = str(path)
    monkeypatch.setitem(sys.modules, name, module)


def test_workspace_modules_follow_current_and_resolve_outside_files_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "pod" / "ws"
    for gen in ("1", "2"):
        (ws / "gens" / gen / "pkg").mkdir(parents=True)
        (ws / "gens" / gen / "pkg" / "model.py").write_text("X = 1\n")
    (ws / "current").symlink_to("gens/1")
    site = tmp_path / "site-packages"
    (site / "lib").mkdir(parents=True)
    (site / "lib" / "util.py").write_text("")
    root = str(ws / "current")

    fake_module(monkeypatch, "neo_t_via_current", ws / "current" / "pkg" / "model.py")
    fake_module(monkeypatch, "neo_t_via_gen1", ws / "gens" / "1" / "pkg" / "model.py")
    fake_module(monkeypatch, "neo_t_site", site / "lib" / "util.py")
    found = set(hot.workspace_modules(root)) & {"neo_t_via_current", "neo_t_via_gen1", "neo_t_site"}
    assert found == {"neo_t_via_current", "neo_t_via_gen1"}
    assert hot._OUTSIDE[str(site / "lib" / "util.py")] == os.path.realpath(site / "lib" / "util.py")
    assert not any(p.startswith(str(ws)) for p in hot._OUTSIDE), "workspace files are never cached"

    # The next generation: current moves; a module still loaded from generation 1 is not gen 2's.
    (ws / "current").unlink()
    (ws / "current").symlink_to("gens/2")
    found = set(hot.workspace_modules(root)) & {"neo_t_via_current", "neo_t_via_gen1", "neo_t_site"}
    assert found == {"neo_t_via_current"}
