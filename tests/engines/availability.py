"""Skip-or-fail for tests that need a real engine (Slurm, Kubernetes) this machine may not host.

Outside CI a missing engine is a reason to skip, said out loud; under ``CI=true`` the machine is
meant to host it, so the same condition fails the test instead of silently skipping a backend.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(engine: str, reason: str) -> NoReturn:
    """Skip outside CI, fail inside it: a CI machine that cannot run ``engine`` is a CI bug."""
    if in_ci():
        pytest.fail(f"{engine} unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"{engine} unavailable: {reason}")
