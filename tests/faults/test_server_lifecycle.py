"""Defect 16: the server extension has a lifecycle. When the Jupyter server stops (its own
cleanup path, and a real ``jupyter server`` process stopped by a signal), the change watcher
stops, no look at the store runs afterwards, and every agent connection is closed; the pods
themselves are untouched (their agents hold the lease) and a later command still finds them."""

# ruff: noqa: F811  (pytest fixtures imported from tests.test_server_api are parameters here)
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from jupyter_neo.server.manager import NeoManager
from tests.conftest import Neo
from tests.faults.state_invariants import assert_consistent, assert_released_and_clean
from tests.test_server_api import api, jp_server_config  # noqa: F401 (fixtures)

pytest_plugins = ("pytest_jupyter.jupyter_server",)


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's own core (``NEO_CONTROLLER=off``): the watcher and connections live in it.
    (Through the controller the server holds neither; tests/test_surfaces_controller.py.)"""
    monkeypatch.setenv("NEO_CONTROLLER", "off")


async def test_server_stop_stops_the_watcher_and_closes_connections(
    in_process: None, api: Any, jp_serverapp: Any, neo: Neo
) -> None:
    code, res = await api("POST", "reservations", {"gpus": 4, "nodes": 2})
    assert code == 201
    code, listed = await api("GET", "reservations")  # live stats: opens a connection to every pod
    assert code == 200 and listed["reservations"][0]["pods"][0]["stats"] is not None
    manager: NeoManager = jp_serverapp.web_app.settings["jupyter_neo_manager"]
    watcher = jp_serverapp.web_app.settings["jupyter_neo_watcher"]
    conns = list(manager.api.core._conns.values())
    assert watcher.is_running() and len(conns) == 2 and not any(c.closed for c in conns)
    await asyncio.sleep(0.5)
    assert manager.feed is not None and manager.feed.polls > 0, (
        "the watcher looks at the store while the server runs"
    )

    await jp_serverapp._cleanup()  # what ServerApp.stop runs before it stops the loop

    assert not watcher.is_running(), "the periodic callback outlived the server"
    assert all(c.closed for c in conns) and manager.api.core._conns == {}, "agent connections left open"
    polls = manager.feed.polls
    await asyncio.sleep(1.0)  # 5 watcher periods
    assert manager.feed.polls == polls, "the store was polled after the server stopped"
    assert [r["id"] for r in assert_consistent(neo)] == [res["id"]], "a server stop releases nothing"
    neo.run("release", "--all", check=True)
    assert_released_and_clean(neo, free=4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_real_server_process_stops_the_extension_on_sigterm(neo: Neo, tmp_path: Any) -> None:
    port = free_port()
    env = dict(neo.env, JUPYTER_CONFIG_DIR=str(tmp_path / "jcfg"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    res: Any = neo.json("reserve", "--gpus", "8")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ip=127.0.0.1", "--no-browser", "--allow-root",
         "--ServerApp.token=t0k", "--ServerApp.jpserver_extensions={'jupyter_neo': True}",
         "--JupyterNeo.poll_interval=0.2", f"--ServerApp.root_dir={tmp_path}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    log = ""
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 60
        while "jupyter-neo: REST API at" not in log or "is running at" not in log:
            line = server.stdout.readline()
            assert line and time.monotonic() < deadline, log
            log += line
        time.sleep(0.5)  # a few watcher periods
        os.kill(server.pid, signal.SIGTERM)
        out, _ = server.communicate(timeout=60)
        log += out
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "jupyter-neo: stopped (watcher off, agent connections closed)" in log, log
    assert "Traceback" not in log, log
    assert [r["id"] for r in assert_consistent(neo)] == [res["id"]], "a server stop releases nothing"
    neo.run("release", "--all", check=True)
    assert_released_and_clean(neo, free=32)
