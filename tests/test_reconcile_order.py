"""A command's reconcile sees the outcome of one already in progress (the controller's adoption).

A restarted controller reconciles at start (rolling back what a killed one left pending) while the
command that started it arrives; that command must not read the store before the rollback ends.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from jupyter_neo.config import load_config
from jupyter_neo.core import Core
from jupyter_neo.model import Reservation, ReservationState
from tests.conftest import Neo


@pytest.mark.asyncio
async def test_a_reconcile_waits_for_the_one_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = Core(load_config(None, tmp_path / "home"))
    release = asyncio.Event()
    finished: list[str] = []

    async def slow_reconcile(
        trust_streams: bool = False,
    ) -> None:  # the adoption's rollback: scancel and wait, say
        await release.wait()
        finished.append("adoption")

    monkeypatch.setattr(core, "_reconcile", slow_reconcile)
    adoption = asyncio.ensure_future(core.reconcile(force=True))
    await asyncio.sleep(0)  # the adoption holds the lock now
    command = asyncio.ensure_future(core.reconcile())  # a command's own, once-per-command reconcile
    await asyncio.sleep(0.05)
    assert not command.done(), "the command went on before the reconcile in progress ended"
    release.set()
    await asyncio.wait_for(asyncio.gather(adoption, command), 5)
    assert finished == ["adoption"]
    await core.close()


def test_open_streams_stand_in_for_the_backend_until_one_drops(neo: Neo) -> None:
    """Per command, a warm gang's backend is not asked again (a pod listing through the Kubernetes
    API, squeue) within LIST_TTL; an agent killed with SIGKILL closes its stream, and the very next
    command lists and releases the reservation, naming the pod."""
    client = neo.client()
    res = client.reserve(gpus=16)
    core = client.core
    client.run_async(core.connect(res))
    core.new_command()
    client.status()  # lists only if the reserve took longer than LIST_TTL (a loaded machine)
    backend = core.backend(res.cluster)
    listings: list[set[str]] = []
    real = backend.reconcile

    async def listing(known: dict[str, Reservation]) -> dict[str, str]:
        listings.append(set(known))
        return await real(known)

    backend.reconcile = listing  # type: ignore[method-assign]
    for _ in range(3):
        core.new_command()
        assert client.status(res.id)[0].state == ReservationState.READY
    assert listings == [], "a warm gang was listed by every command"
    agent_dir = Path(res.pods[1].handle.dir) / "agent"
    os.kill(int((agent_dir / "agent.pid").read_text()), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not core.cold_pods(res) and time.monotonic() < deadline:
        time.sleep(0.01)
    core.new_command()
    after = client.status()  # the next command
    assert listings and res.id in listings[0]
    assert after == [] and client.recorded(res.id).state == ReservationState.RELEASED
    assert res.pods[1].name in (client.recorded(res.id).reason or "")
    client.close()
