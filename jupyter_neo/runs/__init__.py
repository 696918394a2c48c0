"""Runs: one command across every pod of a reservation, with per-rank logs and gang semantics."""

from jupyter_neo.runs.spec import RunSpec
from jupyter_neo.runs.supervisor import RunSupervisor

__all__ = ["RunSpec", "RunSupervisor"]
