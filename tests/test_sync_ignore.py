"""The synced file set equals ``git ls-files -co --exclude-standard`` (minus the defaults)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jupyter_neo.sync.manifest import Scanner

GITIGNORE = {
    ".gitignore": "*.log\n!keep.log\nbuild/\n/top-only.txt\n*.tmp\ndocs/**/draft*\n\\#literal\n",
    "src/.gitignore": "generated/\n*.c\n!important.c\n",
    "src/deep/.gitignore": "!*.tmp\nlocal-only\n",
    "docs/.gitignore": "*.pdf\n",
}
FILES = [
    "README.md", "a.log", "keep.log", "top-only.txt", "sub/top-only.txt", "x.tmp", "#literal",
    "build/out.o", "src/build/x.o", "src/main.py", "src/x.c", "src/important.c",
    "src/generated/g.py", "src/deep/y.tmp", "src/deep/local-only", "src/deep/ok.py",
    "docs/a/b/draft1.md", "docs/a/final.md", "docs/manual.pdf", "weird name with spaces.txt",
    "node_modules/pkg/index.js", "src/__pycache__/m.cpython-311.pyc", "nb/.ipynb_checkpoints/n.ipynb",
    "venv/pyvenv.cfg", "venv/lib/site.py", "nested/.venv/bin/python",
]  # fmt: skip
DEFAULT_DIRS = ("node_modules/", "__pycache__/", ".ipynb_checkpoints/", "venv/", ".venv/")


def git_files(root: Path) -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True, check=True
    ).stdout
    return {p for p in out.decode().split("\0") if p}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".git" / "info").mkdir(parents=True, exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text("*.secret\n")
    for rel, text in GITIGNORE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel in [*FILES, "creds.secret"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    subprocess.run(["git", "add", "README.md"], cwd=root, check=True)
    return root


def synced_files(root: Path) -> set[str]:
    scan = Scanner(root, 2**30).scan()
    return {p for p, e in scan.manifest.entries.items() if e.kind != "d"}


def test_synced_set_matches_git_ls_files(repo: Path) -> None:
    expected = {p for p in git_files(repo) if not any(d in "/" + p for d in ["/" + d for d in DEFAULT_DIRS])}
    assert synced_files(repo) == expected
    assert "keep.log" in expected and "src/important.c" in expected and "src/deep/y.tmp" in expected


def test_neoignore_narrows_and_can_bring_defaults_back(repo: Path) -> None:
    (repo / ".neoignore").write_text("docs/\n!node_modules/\n")
    files = synced_files(repo)
    assert not any(p.startswith("docs/") for p in files)
    assert "node_modules/pkg/index.js" in files
    assert not any(".git/" in p for p in files)
