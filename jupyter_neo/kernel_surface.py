"""How a notebook kernel's ``%neo`` reaches the core: through the resident controller, or in-process.

By default every ``%neo`` verb runs in the controller of ``$NEO_HOME`` (started on demand), the
same process that serves the terminal's ``neo`` and the Jupyter server's REST API: a run started
by a cell is supervised there, so the run widget's Stop (``DELETE runs/ID`` through the server)
reaches the very supervisor that runs it, the gang's agent connections stay warm between cells
and kernels, and a kernel restart loses nothing. ``%neo run`` and ``%neo sync`` are ``call``
requests whose events (rank output, run record updates, sync progress) drive the widget; other
verbs are forwarded command lines, so their output is the CLI's own.

In-process (a private :class:`~jupyter_neo.client.Client`) when ``NEO_CONTROLLER=off``, when the
controller runs with another ``NEO_*`` environment, and always for the px interactive ranks
(:mod:`jupyter_neo.px_magics`): those keep their worker connections in the kernel, because a
cell's namespace lives in the kernel's own streams (docs/jupyter.md, "Where the work happens").
"""

from __future__ import annotations

import logging
import os
from typing import Any

from jupyter_neo.client import Client
from jupyter_neo.controller import remote
from jupyter_neo.controller.api import Api, run_from
from jupyter_neo.controller.client import Unavailable
from jupyter_neo.model import Run

log = logging.getLogger("jupyter_neo.magics")


class KernelSurface:
    """The verbs ``%neo`` needs, each answered by the controller or, failing that, in-process."""

    def __init__(self, in_process: bool | None = None) -> None:
        self.in_process = not remote.enabled() if in_process is None else in_process
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        """The kernel's own in-process client (px ranks, ``NEO_CONTROLLER=off``), made on first use."""
        if self._client is None:
            self._client = Client()
        return self._client

    def _remote(self) -> bool:
        return not self.in_process

    def call(self, verb: str, params: dict[str, Any], on_event: remote.OnEvent | None = None) -> Any:
        """One verb of :mod:`jupyter_neo.controller.api`; a kernel interrupt cancels it."""
        if self._remote():
            try:
                return remote.call(verb, params, on_event)
            except Unavailable as exc:
                log.info("%%neo %s in the kernel: %s", verb, exc)
        api = Api(self.client.core)
        return self.client.run_async(api.call(verb, params, on_event))

    def command(self, argv: list[str], in_process: Any) -> tuple[int, str]:
        """A verb the CLI implements: run by the controller (output streamed here), else
        ``in_process(client)``. Returns (exit code, what the controller's run wrote to stderr)."""
        if self._remote():
            try:
                return remote.command(argv, os.getcwd())
            except Unavailable as exc:
                log.info("%%neo %s in the kernel: %s", argv[0], exc)
        in_process(self.client)
        return 0, ""

    def get_run(self, run_id: str) -> Run:
        return run_from(self.call("get_run", {"run_id": run_id}))

    def stop_run(self, run_id: str) -> Run:
        return run_from(self.call("stop_run", {"run_id": run_id}))

    def logs(self, run_id: str, rank: int = 0, tail: int = 0) -> list[str]:
        return list(self.call("logs", {"run_id": run_id, "rank": rank, "tail": tail})["lines"])

    def release(self, ref: str) -> None:
        self.call("release", {"ref": ref})

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
