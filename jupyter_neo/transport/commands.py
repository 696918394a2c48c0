"""Running fixed argv lists "over there": on this machine, or on a remote host through ``ssh``.

Backends never build a shell string from input: they build argv lists and hand them to a
:class:`Commands`. Every implementation gives the same three things: a finished command's output
(:meth:`Commands.run`), a byte stream over a command's stdio (:meth:`Commands.stream`, the pod
stream ``python3 -c STUB``), and a command detached from this process (:meth:`Commands.start_detached`:
what keeps a pod's agent alive must outlive ``neo reserve``). The Slurm backend uses them for its
client commands (locally on a login node, or through SSH to one), the SSH backend for its hosts;
:mod:`jupyter_neo.transport.ssh` holds the one way to reach a host.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from jupyter_neo.errors import BackendError, ConfigError
from jupyter_neo.transport.streams import SubprocessStream


@dataclass(frozen=True)
class Completed:
    """A finished command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def detail(self) -> str:
        """The command's own words, for error messages (its stderr is usually self-explaining)."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " / ".join(text[-3:]) or f"exit status {self.returncode}"


class Commands(abc.ABC):
    """Runs argv lists somewhere. ``env`` goes to every command.

    ``missing_hint`` and ``hang_hint`` are what a user reads when the program is missing or does
    not answer: the caller knows which fix applies (a Slurm login node, an SSH host...).
    """

    missing_hint: str | None = None
    hang_hint: str | None = None

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)

    @abc.abstractmethod
    def wrap(self, argv: Sequence[str]) -> list[str]:
        """The local argv that runs ``argv`` where the commands run."""

    @abc.abstractmethod
    def wrap_detached(self, argv: Sequence[str]) -> list[str]:
        """The local argv that starts ``argv`` in its own session there and returns at once."""

    def local_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def where(self) -> str:
        return "this machine"

    async def spawn(self, argv: Sequence[str], **kw: object) -> asyncio.subprocess.Process:
        """Start ``argv``; a missing program becomes a ConfigError saying where it was looked for."""
        local = self.wrap(argv)
        try:
            return await asyncio.create_subprocess_exec(*local, env=self.local_env(), **kw)  # type: ignore[arg-type]
        except FileNotFoundError:
            raise ConfigError(f"{local[0]!r} is not installed on {self.where()}", self.missing_hint) from None

    async def run(
        self, argv: Sequence[str], *, timeout: float = 15.0, stdin: bytes | None = None
    ) -> Completed:
        """Run to completion and capture text output; raise BackendError when it hangs."""
        proc = await self.spawn(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except TimeoutError:
            await kill_process(proc)
            raise BackendError(
                f"{argv[0]} did not answer within {timeout:g}s on {self.where()}: {shlex.join(argv)[:200]}",
                self.hang_hint,
            ) from None
        except asyncio.CancelledError:
            await kill_process(proc)
            raise
        assert proc.returncode is not None
        return Completed(
            tuple(argv), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def stream(self, argv: Sequence[str], label: str) -> SubprocessStream:
        """A byte stream over ``argv``'s stdin/stdout (``srun ... python3 -c STUB``, ``ssh host ...``)."""
        proc = await self.spawn(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, limit=1 << 20
        )
        return SubprocessStream(proc, label)

    def start_detached(self, argv: Sequence[str], log: Path | None = None) -> None:
        """Start ``argv`` so that it outlives this process; its stderr goes to ``log``.

        ``setsid -f`` forks it into a new session and returns at once, so it is not our child:
        no zombie is left in a long-running Jupyter server, and a Ctrl-C to ``neo`` does not reach it.
        """
        local = self.wrap_detached(argv)
        err = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            subprocess.run(
                local,
                env=self.local_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                check=True,
                timeout=60,
            )
        except FileNotFoundError:
            raise ConfigError(f"{local[0]!r} is not installed on {self.where()}") from None
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"could not start {argv[0]} detached on {self.where()}: {exc}") from None
        finally:
            if log is not None:
                err.close()  # type: ignore[union-attr]


async def kill_process(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


class LocalCommands(Commands):
    """The commands run on this machine."""

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def wrap_detached(self, argv: Sequence[str]) -> list[str]:
        return ["setsid", "-f", *argv]
