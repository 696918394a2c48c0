"""The list of command modules; a new command is one module and one line here."""

from __future__ import annotations

from jupyter_neo.cli import daemon, datasets, reservations, runs, sync

MODULES = [reservations, runs, sync, datasets, daemon]
