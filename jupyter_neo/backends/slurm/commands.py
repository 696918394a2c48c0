"""How Slurm client commands (``salloc``, ``srun``, ``squeue``...) reach the cluster.

The backend builds argv lists and hands them to a :class:`~jupyter_neo.transport.commands.Commands`:
:class:`LocalSlurmCommands` runs them here (the Jupyter server runs on a login node, Slurm's
clients on ``PATH``); with ``options.login`` they go through SSH to a login node, by the same
:class:`~jupyter_neo.transport.ssh.SshCommands` the SSH backend uses for its hosts (one way to
reach a host; why the OpenSSH client: :mod:`jupyter_neo.transport.ssh`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from jupyter_neo.transport.commands import Commands, Completed, LocalCommands
from jupyter_neo.transport.ssh import SshCommands, SshTarget

# Variables a Slurm job sets for its own processes. Inherited by a controller that itself runs
# inside a job (a notebook on a compute node), they would point our commands at *that* job.
_JOB_VARS_KEPT = {"SLURM_CONF"}
MISSING_HINT = (
    "run jupyter-neo on a Slurm login node (salloc/srun on PATH), "
    "or set options.login: user@login-node in the cluster entry"
)
HANG_HINT = "is slurmctld up? check with: sinfo"

SlurmCommands = Commands


def client_environ(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment minus inherited ``SLURM_*`` job variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k in _JOB_VARS_KEPT}
    env.update(extra)
    return env


class LocalSlurmCommands(LocalCommands):
    """Slurm's clients are on this machine's PATH (the controller runs on a login node)."""

    missing_hint = MISSING_HINT
    hang_hint = HANG_HINT

    def local_env(self) -> dict[str, str]:
        return client_environ(self.env)


def login_commands(env: Mapping[str, str], login: str, ssh_options: Sequence[str] = ()) -> SshCommands:
    """Slurm's clients on a login node reached with ``ssh`` (``env`` goes as ``env K=V``)."""
    cmd = SshCommands(SshTarget(login, options=tuple(ssh_options)), env, what="login node")
    cmd.missing_hint, cmd.hang_hint = MISSING_HINT, HANG_HINT
    return cmd


__all__ = ["Completed", "LocalSlurmCommands", "SlurmCommands", "client_environ", "login_commands"]
