"""Slurm backend package: :class:`SlurmBackend` (reservations as allocations), the command runners
that reach Slurm locally or over SSH, and the validated cluster ``options``. See docs/slurm.md."""

from jupyter_neo.backends.slurm.backend import SlurmBackend
from jupyter_neo.backends.slurm.commands import LocalSlurmCommands, SlurmCommands, login_commands
from jupyter_neo.backends.slurm.options import SlurmOptions, parse_options

__all__ = [
    "LocalSlurmCommands",
    "SlurmBackend",
    "SlurmCommands",
    "SlurmOptions",
    "login_commands",
    "parse_options",
]
