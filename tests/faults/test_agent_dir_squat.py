"""Another user of a shared node cannot plant the agent a controller then runs.

SSH and Slurm pods live under ``/tmp/jupyter-neo-<user>`` on the node by default: a directory any
local user could create first. The boot stubs (``neo_agent.boot.GUARD``) trust the agent directory
only when it and every directory above it belong to the user (or root), make it private, and use
an agent zip found there only when its content has the expected hash.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_neo.errors import BackendError
from jupyter_neo.transport.bundle import INSTALL, NEED_ZIP, agent_bundle, stub_argv
from jupyter_neo.transport.connection import AgentConnection
from jupyter_neo.transport.streams import SubprocessStream

OTHER_UID = 65534  # nobody

needs_root = pytest.mark.skipif(os.getuid() != 0, reason="giving a directory to another user needs root")


def squatted(tmp_path: Path) -> Path:
    """``/tmp/jupyter-neo-alice`` made by somebody else, world-writable, as an attacker leaves it."""
    base = tmp_path / "jupyter-neo-alice"
    base.mkdir()
    os.chown(base, OTHER_UID, OTHER_UID)
    base.chmod(0o777)
    return base


@needs_root
def test_the_stub_refuses_an_agent_dir_below_another_users_directory(tmp_path: Path) -> None:
    agent_dir = squatted(tmp_path) / "r-1" / "node1" / "agent"
    planted = agent_dir / f"agent-{agent_bundle().digest}.pyz"
    agent_dir.mkdir(parents=True)
    planted.write_bytes(b"import os; os.system('touch /tmp/owned')")  # would run as the victim
    proc = subprocess.run(
        stub_argv(sys.executable, str(agent_dir)), input=b"", capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 4
    assert proc.stdout == b""  # neither NEED nor READY: nothing was loaded or started
    assert b"refusing agent directory" in proc.stderr
    assert b"belongs to uid 65534" in proc.stderr
    assert not (agent_dir / "agent.sock").exists() and not (agent_dir / "agent.log").exists()


@needs_root
def test_a_connection_names_the_refused_directory_in_one_line(tmp_path: Path) -> None:
    agent_dir = squatted(tmp_path) / "r-2" / "node1" / "agent"

    async def attempt() -> None:
        stream = await SubprocessStream.open(stub_argv(sys.executable, str(agent_dir)))
        await AgentConnection.open(stream, "s" * 32, name="node1")

    with pytest.raises(BackendError) as err:
        asyncio.run(attempt())
    assert "node1: refusing agent directory" in err.value.message
    assert "belongs to uid 65534" in err.value.message and "\n" not in err.value.message


def test_a_corrupt_or_replaced_zip_in_a_private_dir_is_uploaded_again(tmp_path: Path) -> None:
    agent_dir = tmp_path / "pod" / "agent"
    agent_dir.mkdir(parents=True)
    agent_dir.chmod(0o755)  # looser than it should be: the stub tightens it
    digest = agent_bundle().digest
    zip_path = agent_dir / f"agent-{digest}.pyz"
    zip_path.write_bytes(agent_bundle().data[:100])  # truncated (a crash, a full disk, a tamperer)

    def install(payload: bytes) -> int:
        argv = [sys.executable, "-c", INSTALL, str(agent_dir), digest]
        return subprocess.run(argv, input=payload, capture_output=True, timeout=60, check=False).returncode

    assert install(b"") == NEED_ZIP  # not trusted: asks for the zip instead of running the damaged one
    assert agent_dir.stat().st_mode & 0o777 == 0o700
    assert install(agent_bundle().data) == 0
    assert zip_path.read_bytes() == agent_bundle().data
    assert install(b"") == 0  # now present and intact: nothing to send
