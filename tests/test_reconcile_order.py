"""A command's reconcile sees the outcome of one already in progress (the controller's adoption).

A restarted controller reconciles at start (rolling back what a killed one left pending) while the
command that started it arrives; that command must not read the store before the rollback ends.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jupyter_neo.config import load_config
from jupyter_neo.core import Core


@pytest.mark.asyncio
async def test_a_reconcile_waits_for_the_one_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = Core(load_config(None, tmp_path / "home"))
    release = asyncio.Event()
    finished: list[str] = []

    async def slow_reconcile() -> None:  # the adoption's rollback: scancel and wait, say
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
