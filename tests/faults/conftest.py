"""Fixtures shared by the fault-injection tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jupyter_neo.client import Client
from jupyter_neo.model import Reservation
from tests.conftest import Neo


@pytest.fixture
def one_pod(neo: Neo) -> Iterator[tuple[Client, Reservation]]:
    """A one-pod reservation on the local backend, released (and checked for leftovers) after."""
    client = neo.client()
    res = client.reserve(gpus=8)
    yield client, res
    client.release(res.id)
    client.close()
