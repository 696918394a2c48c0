"""The one way jupyter-neo reaches a host over SSH: the OpenSSH client, as the user would type it.

Used by the SSH backend (every GPU host) and by the Slurm backend (a login node). A
:class:`SshTarget` is a destination as the user names it (an ``~/.ssh/config`` alias such as
``gpu-3``, or ``user@address``) plus what the cluster entry adds (user, port, identity, jump host,
a config file, extra options); :class:`SshCommands` runs argv lists there.

Why the OpenSSH client and not fabric (paramiko): a pod stream *is* a subprocess's stdio, so
``ssh host -- python3 -c STUB`` fits :class:`~jupyter_neo.transport.streams.SubprocessStream`
unchanged, and everything the user configured for ``ssh gpu-3`` applies as is: Host aliases,
``ProxyJump`` chains, ``IdentityFile``, certificates, agents and security keys, ``Match`` blocks,
``known_hosts`` checking, and ``ControlMaster`` connection sharing, which paramiko does not
implement. Parallel fan-out (inventory, preparing hosts) is ``asyncio.gather`` over subprocesses,
so fabric's thread groups would add a dependency and no capability. See docs/ssh.md.

Connection sharing: unless the user's own ssh configuration already sets ``ControlMaster`` for a
destination (read with ``ssh -G``, which connects nowhere), commands share one master connection
per host (``ControlMaster=auto``, ``ControlPersist``), so the many short commands of a reserve cost
one handshake per host instead of one each.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_neo.transport.commands import Commands, Completed

SSH = "ssh"
SSH_FAILED = 255  # the client's own failure (connect, host key, auth); anything else is the command's
CONTROL_PERSIST_S = 60
_UNREACHABLE = (
    "connection timed out",
    "no route to host",
    "connection refused",
    "could not resolve hostname",
    "network is unreachable",
    "name or service not known",
    "connection closed by",
    "connection reset",
    "operation timed out",
    "timeout, server",
    "broken pipe",
)


@dataclass(frozen=True)
class SshTarget:
    """How to reach one host: the destination plus the cluster entry's connection settings.

    Command-line settings (``-l``, ``-p``, ``-i``, ``-J``) win over ``~/.ssh/config``; leave them
    unset to let the user's config decide, as ``ssh gpu-3`` would.
    """

    destination: str
    user: str | None = None
    port: int | None = None
    identity: str | None = None
    jump: str | None = None
    config_file: str | None = None
    options: tuple[str, ...] = ()
    connect_timeout: float = 10.0
    multiplex: bool = True
    control_dir: str | None = field(default=None, compare=False)

    def base_argv(self) -> list[str]:
        """``ssh`` and every option, without the destination (shared by :meth:`argv` and ``ssh -G``)."""
        argv = [SSH]
        if self.config_file:
            argv += ["-F", self.config_file]
        argv += [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, round(self.connect_timeout))}",
            # a host that vanishes (power, network) ends its streams in ~15 s instead of hours
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
        ]  # fmt: skip
        for flag, value in (("-l", self.user), ("-p", self.port), ("-i", self.identity), ("-J", self.jump)):
            if value:
                argv += [flag, str(value)]
        return [*argv, *self.options]

    def argv(self, remote: str) -> list[str]:
        """The local argv that runs the shell command ``remote`` (already quoted) on the host."""
        return [*self.base_argv(), *self._multiplexing(), self.destination, "--", remote]

    def _multiplexing(self) -> list[str]:
        if not self.multiplex or _user_sets_control_master(tuple(self.base_argv()), self.destination):
            return []
        path = self.control_dir or default_control_dir()
        if path is None:
            return []
        # One master per destination *as named* (and config file), not only per address: ``%C``
        # alone would let an alias with its own host key or settings ride another alias's master.
        named = hashlib.sha256(f"{self.config_file}|{self.destination}".encode()).hexdigest()[:12]
        return [
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={path}/{named}-%C",
            "-o", f"ControlPersist={CONTROL_PERSIST_S}",
        ]  # fmt: skip

    def describe(self) -> str:
        who = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        via = f" via {self.jump}" if self.jump else ""
        return f"{who}{self.destination}{port}{via}"


def default_control_dir() -> str | None:
    """A short private directory for master sockets (unix socket paths are limited to ~107 bytes).

    None (no connection sharing) when the directory is not ours alone: in a shared /tmp another
    user could otherwise plant a socket that our ssh would use as its master.
    """
    path = Path(tempfile.gettempdir()) / f"neo-ssh-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return str(path)


@functools.cache
def _user_sets_control_master(base: tuple[str, ...], destination: str) -> bool:
    """Whether the user's ssh configuration already multiplexes ``destination`` (``ssh -G``)."""
    try:
        out = subprocess.run(
            [*base, "-G", destination], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "controlmaster":
            return value.strip() not in ("false", "no")
    return False


def remote_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """One shell-quoted command line for the remote shell; ``env`` as ``env K=V`` (sshd drops most)."""
    envs = [f"{k}={v}" for k, v in sorted((env or {}).items())]
    return shlex.join(["env", *envs, *argv]) if envs else shlex.join(argv)


class SshCommands(Commands):
    """Commands run on one host through ``ssh`` (BatchMode: it never prompts).

    Detached commands get their stdio redirected on the host, or ssh would wait for them to close it.
    """

    def __init__(
        self, target: SshTarget, env: Mapping[str, str] | None = None, *, what: str = "host"
    ) -> None:
        super().__init__(env or {})
        self.target = target
        self.what = what

    def where(self) -> str:
        return f"{self.what} {self.target.describe()}"

    def local_env(self) -> dict[str, str]:
        return dict(os.environ)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return self.target.argv(remote_command(argv, self.env))

    def wrap_detached(self, argv: Sequence[str]) -> list[str]:
        return self.target.argv(f"setsid -f {remote_command(argv, self.env)} </dev/null >/dev/null 2>&1")


def ssh_failure(done: Completed) -> tuple[str, str] | None:
    """``(what went wrong, the fix)`` when the ssh client itself failed (exit 255), else None.

    The client's last stderr line names the cause; it is sorted into the few a user can act on.
    """
    if done.returncode != SSH_FAILED:
        return None
    lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith("@")]
    text = " ".join(lines).lower()
    last = lines[-1] if lines else "ssh failed"
    if "host key verification failed" in text or "remote host identification has changed" in text:
        return (
            "host key mismatch (the host's key differs from known_hosts)",
            "if the host was reinstalled, remove the old key (ssh-keygen -R HOST) and connect once by hand",
        )
    if "permission denied" in text or "too many authentication failures" in text:
        return (
            f"authentication refused: {last}",
            "check the host's user and identity (options.user / identity, or ~/.ssh/config)",
        )
    if any(word in text for word in _UNREACHABLE):
        return f"unreachable: {last}", "is the host up and its address, port and jump host right?"
    return f"ssh failed: {last}", "try: ssh HOST true"
