"""Shared fixtures: an isolated NEO_HOME per test, the CLI as a subprocess, and a leak check.

Every test that touches pods ends by asserting that no process of its NEO_HOME survives: "no
orphan process" is checked against the real process table, not assumed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from jupyter_neo.backends.local import kill_tree_under, procs_under

NEO = [sys.executable, "-m", "jupyter_neo.cli.main"]


@dataclass
class Neo:
    """A sandboxed jupyter-neo installation: its home, config and CLI."""

    home: Path
    config: Path
    env: dict[str, str]

    def run(
        self, *args: str, check: bool = False, timeout: float = 120, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*NEO, *args], env=self.env, check=False, capture_output=True, text=True, timeout=timeout, **kw
        )  # type: ignore[call-overload]
        if check and proc.returncode != 0:
            raise AssertionError(
                f"neo {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc  # type: ignore[no-any-return]

    def popen(self, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        """The CLI in the background, for tests that act on it mid-flight (signals, kills)."""
        return subprocess.Popen(
            [*NEO, *args], cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def json(self, *args: str) -> object:
        proc = self.run(*args, "--json", check=True)
        return json.loads(proc.stdout)

    def write_config(self, text: str) -> None:
        self.config.write_text(text)

    def processes(self) -> list[str]:
        """Live processes (pid + argv) that belong to this sandbox's pods."""
        return describe(procs_under(self.home))

    def agents(self) -> list[str]:
        """The resident agents among :meth:`processes`. Where the controller keeps a warm stream
        through the boot stub (a Kubernetes exec, an ``srun`` step), each pod also shows that
        stream's relay process, by design: opened once per controller lifetime, not per command."""
        return [p for p in self.processes() if ".pyz serve " in p]

    def client(self):  # type: ignore[no-untyped-def]
        from jupyter_neo.client import Client
        from jupyter_neo.config import load_config

        return Client(load_config(self.config if self.config.exists() else None, self.home))


# Tests on the real engines share one machine-wide instance each (the Slurm cluster and sshd in
# network namespaces, the Kubernetes cluster): started by a session fixture, stopped at its end.
# ``make test`` runs two pytest-xdist workers; the files below run in one worker, in order, so no
# two workers start, use or stop an engine at once, and the rest spreads over both. The browser
# test is a unit of its own (the heaviest single user of the CPU). A scheduler, not
# ``xdist_group`` marks: xdist 3.8 writes a group into ``item._nodeid``, which pytest 9 no longer
# reads, so marked groups are silently ignored there.
ENGINE_FIXTURES = {"slurm_cluster", "ssh_fleet", "kube_cluster"}
ENGINE_FILES = {
    "tests/faults/test_slurm_runs.py",
    "tests/test_datasets_slurm.py",
    "tests/test_estate_failover.py",
    "tests/test_slurm_backend.py",
    "tests/test_slurm_harness.py",
    "tests/test_slurm_over_ssh.py",
    "tests/test_slurm_run.py",
    "tests/test_ssh_fleet.py",
}


def work_unit(nodeid: str) -> str:
    """The scheduling unit of a test: ``engines``, ``browser``, or the test itself."""
    path = nodeid.split("::", 1)[0]
    if path in ENGINE_FILES or path.startswith("tests/k8s_real/"):
        return "engines"
    return "browser" if path == "tests/test_sidebar_browser.py" else nodeid


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class EngineUnits(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return EngineUnits(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    stray = sorted(
        {
            i.nodeid.split("::", 1)[0]
            for i in items
            if ENGINE_FIXTURES & set(getattr(i, "fixturenames", ())) and work_unit(i.nodeid) != "engines"
        }
    )
    if stray:
        raise pytest.UsageError(
            f"{', '.join(stray)} use a real engine: add them to ENGINE_FILES in tests/conftest.py "
            "(so they never run beside another engine test in a second worker)"
        )


@pytest.fixture
def neo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Neo]:
    home = tmp_path / "home"
    config = tmp_path / "neo.yaml"
    env = dict(os.environ)
    env.update(NEO_HOME=str(home), XDG_CONFIG_HOME=str(tmp_path / "xdg"), PYTHONUNBUFFERED="1")
    env.pop("NEO_CONFIG", None)
    monkeypatch.setenv("NEO_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("NEO_CONFIG", raising=False)
    sandbox = Neo(home=home, config=config, env=env)
    yield sandbox
    stop_controller(home)
    leftovers = describe(procs_under(home))
    kill_tree_under(home)
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture(scope="session", autouse=True)
def _controllers_stopped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session, stop the resident controllers of every NEO_HOME the tests made.

    The ``neo`` fixture stops its own; homes made by other fixtures (a second user, a Jupyter
    server, the real-cluster tier) would otherwise wait out their idle period after pytest ends.
    """
    yield
    base = str(tmp_path_factory.getbasetemp())
    for home in sorted({h for h in _controller_homes() if h.startswith(base)}):
        with contextlib.suppress(AssertionError):  # SIGKILLed already when it would not stop
            stop_controller(Path(home))


def _controller_homes() -> list[str]:
    homes = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "jupyter_neo.controller.daemon" in " ".join(proc.info["cmdline"] or []):
                homes.append(proc.environ().get("NEO_HOME", ""))
        except psutil.Error:
            continue
    return homes


def kill_controller(neo: Neo) -> int:
    """SIGKILL the sandbox's resident controller (it must be running); returns its pid."""
    from jupyter_neo.controller import client

    pid = client.controller_pid(str(neo.home))
    assert pid and pid > 0, "no controller is running"
    os.kill(pid, signal.SIGKILL)
    return pid


def stop_controller(home: Path) -> None:
    """Stop the sandbox's resident controller (the CLI started it) and wait until it is gone."""
    from jupyter_neo.controller import client

    pid = client.controller_pid(str(home))
    if pid is None:
        return
    try:
        client.request(str(home), {"type": "stop"})
    except (client.Unavailable, OSError):
        pass
    deadline = time.monotonic() + 30
    while client.controller_pid(str(home)) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    if client.controller_pid(str(home)) is not None and pid > 0:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError(f"the controller of {home} did not stop within 30 s")


def describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for proc in procs:
        try:
            out.append(f"{proc.pid} {' '.join(proc.cmdline())}")
        except psutil.Error:
            continue
    return out


def use_config(neo: Neo, text: str) -> None:
    neo.write_config(text)
    neo.env["NEO_CONFIG"] = str(neo.config)


def read_until(stream: IO[str] | None, needle: str, count: int = 1) -> str:
    """Read lines until ``needle`` was seen on ``count`` of them; fails if the stream ends first."""
    assert stream is not None
    seen, text = 0, ""
    while seen < count:
        line = stream.readline()
        assert line, f"the stream ended before {count} x {needle!r}:\n{text}"
        text += line
        seen += needle in line
    return text
