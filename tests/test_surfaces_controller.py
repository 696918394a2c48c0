"""The Jupyter server, a notebook kernel and the terminal share one resident controller.

Real processes: the server is pytest-jupyter's real ``ServerApp`` (its REST handlers on its own
loop), the terminal is the ``neo`` CLI as a subprocess, the kernel is a real IPython kernel
started by ``jupyter_client``, and the controller is the process ``neo`` starts on demand; the
controller is killed with SIGKILL.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.test_server_api are parameters here)
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from jupyter_neo.controller import client as controller
from jupyter_neo.runs.supervisor import STOPPED
from jupyter_neo.server.manager import NeoManager
from tests.conftest import Neo, kill_controller
from tests.test_server_api import api, events_of, jp_server_config, wait_for  # noqa: F401 (fixtures)

pytest_plugins = ("pytest_jupyter.jupyter_server",)
LONG_RUN = "run --gpus 2 --nodes 2 --ranks all --cmd \"sh -c 'echo started; sleep 60'\""


def controllers_of(home: Path) -> list[int]:
    """Pids of every controller process serving ``home`` (the process table, not the lock file)."""
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            daemon = "jupyter_neo.controller.daemon" in " ".join(proc.info["cmdline"] or [])
            if daemon and proc.environ().get("NEO_HOME") == str(home):
                pids.append(proc.pid)
        except psutil.Error:
            continue
    return pids


def neo_json(neo: Neo, *args: str) -> Any:
    return json.loads(neo.run(*args, "--json", check=True).stdout)


@pytest.fixture
def same_env(neo: Neo) -> Neo:
    """The terminal's environment is the server's (owner included), so both use one controller."""
    neo.env["NEO_OWNER"] = "alice"
    return neo


async def test_rest_and_terminal_share_one_controller_which_survives_a_kill(
    same_env: Neo, api: Any, jp_serverapp: Any
) -> None:
    neo = same_env
    events = events_of(jp_serverapp)
    manager: NeoManager = jp_serverapp.web_app.settings["jupyter_neo_manager"]
    assert not manager.in_process

    code, web = await api("POST", "reservations", {"gpus": 2, "nodes": 2, "name": "web"})
    assert code == 201, web
    listed = await asyncio.to_thread(neo_json, neo, "status")
    assert [r["id"] for r in listed] == [web["id"]], "the terminal sees what REST reserved"
    term = await asyncio.to_thread(neo_json, neo, "reserve", "--gpus", "2", "--nodes", "2", "--name", "term")
    code, doc = await api("GET", "reservations")
    assert {r["id"] for r in doc["reservations"]} == {web["id"], term["id"]}, "REST sees the terminal's"
    # The terminal's reserve reaches the sidebar through the controller's event stream.
    await wait_for(lambda: {"kind": "reservation", "id": term["id"], "state": "ready"} in events)

    daemon = await asyncio.to_thread(neo_json, neo, "daemon", "status")
    assert controllers_of(neo.home) == [daemon["pid"]], "one controller for the server and the terminal"
    assert daemon["subscribers"] == 1 and manager.controller_pid == daemon["pid"]
    log = (neo.home / "controller.log").read_text()
    assert "call reserve: result" in log, "REST's reserve ran in the controller"
    assert "neo reserve --gpus 2" in log, "the terminal's reserve ran in the controller"

    old = kill_controller(neo)
    code, doc = await api("GET", "reservations")
    assert code == 200 and {r["id"] for r in doc["reservations"]} == {web["id"], term["id"]}
    new = controller.controller_pid(str(neo.home))
    assert new and new != old, "the next REST call started a new controller"
    await wait_for(lambda: manager.controller_pid == new, timeout=30)
    assert controllers_of(neo.home) == [new]
    # Events resume: a release in the terminal shows up on the server's bus.
    await asyncio.to_thread(neo.run, "release", "term", check=True)
    await wait_for(lambda: {"kind": "reservation", "id": term["id"], "state": "released"} in events)

    await jp_serverapp._cleanup()  # the server stops: its event stream closes, the controller stays
    await wait_for(lambda: controller.request(str(neo.home), {"type": "status"})["subscribers"] == 0)
    assert controller.controller_pid(str(neo.home)) == new


@contextlib.asynccontextmanager
async def kernel(neo: Neo, tmp_path: Path) -> AsyncIterator[Any]:
    """A real IPython kernel (jupyter_client) in a workspace, with ``%load_ext jupyter_neo`` done."""
    from jupyter_client.manager import AsyncKernelManager

    ws = tmp_path / "kernel-ws"
    ws.mkdir()
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel(env=dict(neo.env), cwd=str(ws))
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        await execute(kc, "%load_ext jupyter_neo")
        yield km, kc
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def execute(kc: Any, code: str, timeout: float = 180) -> str:
    """Run ``code`` in the kernel; its stdout and stderr as text (an error's name and value too)."""
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] == "error":
            out.append(f"{content['ename']}: {content['evalue']}\n")

    await kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    return "".join(out)


async def running_run(api: Any, exclude: set[str]) -> dict[str, Any]:
    """The first run (not in ``exclude``) whose every rank printed, through REST."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        _, doc = await api("GET", "runs")
        for run in doc["runs"]:
            if run["id"] not in exclude and run["state"] == "running":
                _, logs = await api("GET", f"runs/{run['id']}/logs", rank="1")
                if "started" in logs.get("lines", []):
                    return run  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError("no run came up")


async def test_a_kernel_run_is_supervised_by_the_controller_and_stops_from_rest_or_an_interrupt(
    same_env: Neo, api: Any, jp_serverapp: Any, tmp_path: Path
) -> None:
    async with kernel(same_env, tmp_path) as (km, kc):
        await kernel_runs(same_env, api, km, kc)


async def kernel_runs(neo: Neo, api: Any, km: Any, kc: Any) -> None:
    cell = f"r = %neo {LONG_RUN}\nprint('RESULT', r.state, r.exit_code)"
    blocked = asyncio.ensure_future(execute(kc, cell))
    run = await running_run(api, set())
    pid = controller.controller_pid(str(neo.home))
    assert run["controller"]["pid"] == pid, "the kernel's run is supervised by the controller"
    assert controllers_of(neo.home) == [pid]

    t0 = time.monotonic()
    code, stopped = await api("DELETE", f"runs/{run['id']}")  # the widget's Stop
    out = await asyncio.wait_for(blocked, 60)
    assert code == 200 and stopped["state"] == "stopped"
    assert time.monotonic() - t0 < 15, "the stop ended the blocking cell long before its sleep"
    assert "RESULT stopped 130" in out, out
    code, doc = await api("GET", f"runs/{run['id']}")
    assert [r["state"] for r in doc["ranks"]] == ["stopped", "stopped"] and doc["error"] == STOPPED

    # A kernel interrupt cancels the call: the controller stops the run on every rank and records it.
    blocked = asyncio.ensure_future(execute(kc, cell))
    second = await running_run(api, {run["id"]})
    await km.interrupt_kernel()
    out = await asyncio.wait_for(blocked, 60)
    assert "RESULT stopped 130" in out, out
    code, doc = await api("GET", f"runs/{second['id']}")
    assert doc["state"] == "stopped" and [r["state"] for r in doc["ranks"]] == ["stopped", "stopped"]

    # RunResult's verbs go through the controller too.
    out = await execute(kc, "print('LOGS', r.logs(1)); r.release(); print('GONE')")
    assert "LOGS ['started']" in out and "GONE" in out, out
    assert await asyncio.to_thread(neo_json, neo, "status") == []


def test_a_call_raises_the_error_type_the_controller_met(neo: Neo) -> None:
    """Typed error frames: the caller gets the same jupyter_neo.errors type, message and hint."""
    from jupyter_neo.controller import remote
    from jupyter_neo.errors import InvalidRequest, NotFound

    assert [c["name"] for c in remote.call("clusters")] == ["local"]
    pid = controller.controller_pid(str(neo.home))
    assert pid and pid > 0, "the call started the controller of NEO_HOME"
    with pytest.raises(NotFound, match="no reservation 'nope'") as info:
        remote.call("reservation", {"ref": "nope"})
    assert info.value.hint, "the hint travels too"
    with pytest.raises(InvalidRequest, match="unknown verb 'bogus'"):
        remote.call("bogus")
    with pytest.raises(InvalidRequest, match="unexpected keyword argument 'colour'"):
        remote.call("runs", {"colour": 1})
    assert controller.controller_pid(str(neo.home)) == pid


@pytest.fixture
def foreign_controller(neo: Neo) -> int:
    """A controller started from a terminal whose NEO_* environment is not the server's
    (the server runs with NEO_OWNER=alice, the terminal without)."""
    assert "NEO_OWNER" not in neo.env
    neo.run("clusters", check=True)
    pid = controller.controller_pid(str(neo.home))
    assert pid and pid > 0
    return pid


async def test_a_controller_with_another_environment_leaves_the_server_in_process(
    foreign_controller: int, api: Any, jp_serverapp: Any, neo: Neo
) -> None:
    events = events_of(jp_serverapp)
    manager: NeoManager = jp_serverapp.web_app.settings["jupyter_neo_manager"]
    await wait_for(lambda: manager.in_process)
    code, res = await api("POST", "reservations", {"gpus": 2, "nodes": 2})
    assert code == 201 and res["owner"] == "alice", "reserved by the server itself, as its owner"
    term = await asyncio.to_thread(neo_json, neo, "reserve", "--gpus", "2", "--nodes", "2")
    assert term["owner"] != "alice"
    # The server looks at the store itself now: the terminal's reserve still becomes an event.
    await wait_for(lambda: {"kind": "reservation", "id": term["id"], "state": "ready"} in events)
    assert controller.controller_pid(str(neo.home)) == foreign_controller


def test_a_daemon_stop_cancels_a_call_in_flight_and_records_its_run(neo: Neo, tmp_path: Path) -> None:
    """``neo daemon stop`` during a notebook's run: the call ends as cancelled (the kernel sees an
    interrupt) and the run is stopped on every rank and recorded, not left to a 20 s drain."""
    import threading

    from jupyter_neo.controller import remote

    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(
                remote.call(
                    "run",
                    {"target": "sh -c 'echo started; sleep 60'", "kind": "cmd", "gpus": 2, "nodes": 2,
                     "workspace": str(tmp_path)},
                )
            )  # fmt: skip
        except BaseException as exc:  # the outcome is what the test looks at
            outcome.append(exc)

    caller = threading.Thread(target=run)
    caller.start()
    deadline = time.monotonic() + 120
    runs: Any = []
    while not (runs and runs[0]["state"] == "running") and time.monotonic() < deadline:
        time.sleep(0.1)
        runs = neo_json(neo, "runs")
    assert runs and runs[0]["state"] == "running", runs
    t0 = time.monotonic()
    neo.run("daemon", "stop", check=True)
    caller.join(60)
    assert time.monotonic() - t0 < 15, "the stop did not wait out a drain"
    assert outcome and isinstance(outcome[0], KeyboardInterrupt), outcome
    run = neo_json(neo, "runs")[0]
    assert run["state"] == "stopped" and [r["state"] for r in run["ranks"]] == ["stopped", "stopped"]
    neo.run("release", "--all", check=True)
