"""How Slurm client commands (``salloc``, ``srun``, ``squeue``...) reach the cluster.

The backend never builds a shell string from input: it builds argv lists and hands them to a
:class:`SlurmCommands`. :class:`LocalCommands` runs them here (the Jupyter server runs on a login
node, Slurm's clients on ``PATH``); :class:`SshCommands` runs the same argv on a login node through
the OpenSSH client, each argument quoted with :func:`shlex.quote`. Both give the backend the same
three things: a finished command's output, a byte stream over a command's stdio (``srun`` to a pod),
and a command detached from this process (the ``srun`` that keeps a pod's agent alive must outlive
the controller, or ``neo reserve`` would lose its gang when it exits).

Why OpenSSH rather than fabric for the login-node path: a pod stream *is* a subprocess's stdio, so
``ssh login -- srun ...`` fits :class:`~jupyter_neo.transport.streams.SubprocessStream` unchanged,
reuses the user's ``~/.ssh/config`` (jump hosts, certificates, ControlMaster for fast reconnects),
and adds no dependency.
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

# Variables a Slurm job sets for its own processes. Inherited by a controller that itself runs
# inside a job (a notebook on a compute node), they would point our commands at *that* job.
_JOB_VARS_KEPT = {"SLURM_CONF"}


def client_environ(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment minus inherited ``SLURM_*`` job variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k in _JOB_VARS_KEPT}
    env.update(extra)
    return env


@dataclass(frozen=True)
class Completed:
    """A finished Slurm client command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def detail(self) -> str:
        """The command's own words, for error messages (Slurm's stderr is usually self-explaining)."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " / ".join(text[-3:]) or f"exit status {self.returncode}"


class SlurmCommands(abc.ABC):
    """Runs argv lists where Slurm's client commands work. ``env`` goes to every command."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)

    @abc.abstractmethod
    def wrap(self, argv: Sequence[str]) -> list[str]:
        """The local argv that runs ``argv`` where Slurm's clients are."""

    @abc.abstractmethod
    def wrap_detached(self, argv: Sequence[str]) -> list[str]:
        """The local argv that starts ``argv`` in its own session there and returns at once."""

    def local_env(self) -> dict[str, str]:
        return client_environ(self.env)

    def where(self) -> str:
        return "this machine"

    async def spawn(self, argv: Sequence[str], **kw: object) -> asyncio.subprocess.Process:
        """Start ``argv``; a missing Slurm client becomes a ConfigError saying where to run."""
        local = self.wrap(argv)
        try:
            return await asyncio.create_subprocess_exec(*local, env=self.local_env(), **kw)  # type: ignore[arg-type]
        except FileNotFoundError:
            raise ConfigError(
                f"{local[0]!r} is not installed on {self.where()}",
                "run jupyter-neo on a Slurm login node (salloc/srun on PATH), "
                "or set options.login: user@login-node in the cluster entry",
            ) from None

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
            await _kill(proc)
            raise BackendError(
                f"{argv[0]} did not answer within {timeout:g}s: {shlex.join(argv)}",
                "is slurmctld up? check with: sinfo",
            ) from None
        except asyncio.CancelledError:
            await _kill(proc)
            raise
        assert proc.returncode is not None
        return Completed(
            tuple(argv), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def stream(self, argv: Sequence[str], label: str) -> SubprocessStream:
        """A byte stream over ``argv``'s stdin/stdout (``srun ... python3 -c STUB``)."""
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
                timeout=30,
            )
        except FileNotFoundError:
            raise ConfigError(f"{local[0]!r} is not installed on {self.where()}") from None
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"could not start {argv[0]} detached on {self.where()}: {exc}") from None
        finally:
            if log is not None:
                err.close()  # type: ignore[union-attr]


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


class LocalCommands(SlurmCommands):
    """Slurm's clients are on this machine's PATH (the controller runs on a login node)."""

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def wrap_detached(self, argv: Sequence[str]) -> list[str]:
        return ["setsid", "-f", *argv]


class SshCommands(SlurmCommands):
    """Slurm's clients are on a login node reached with ``ssh`` (BatchMode: never prompts).

    ``env`` is passed as ``env K=V`` in front of the remote command, since sshd drops most
    variables. Detached commands get their stdio redirected on the login node, or ssh would wait
    for them to close it.
    """

    def __init__(self, env: Mapping[str, str], login: str, ssh_options: Sequence[str] = ()) -> None:
        super().__init__(env)
        self.login = login
        self.ssh_options = list(ssh_options)

    def where(self) -> str:
        return f"login node {self.login}"

    def local_env(self) -> dict[str, str]:
        return dict(os.environ)

    def _remote(self, argv: Sequence[str]) -> str:
        envs = [f"{k}={v}" for k, v in sorted(self.env.items())]
        return shlex.join(["env", *envs, *argv]) if envs else shlex.join(argv)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return ["ssh", "-o", "BatchMode=yes", *self.ssh_options, self.login, "--", self._remote(argv)]

    def wrap_detached(self, argv: Sequence[str]) -> list[str]:
        remote = f"setsid -f {self._remote(argv)} </dev/null >/dev/null 2>&1"
        return ["ssh", "-o", "BatchMode=yes", *self.ssh_options, self.login, "--", remote]
