"""The Python API of interactive ranks: ``client.ranks(...)`` runs code in a warm gang's workers.

```python
ranks = client.ranks("exp")          # the hot session of reservation "exp"
ranks.start()                        # once: torchrun starts one persistent worker per rank
ranks.run("x = torch.ones(1) * (rank + 1)")
ranks.run("dist.all_reduce(x); x.item()").values()   # {0: '10.0', 1: '10.0', ...}
t = ranks.pull("x", rank=0)
```

The workers are those of ``neo run --hot`` (see docs/interactive.md for the namespace rule). The
reservation and its session are looked up once and cached: a cell then costs one request per
pod over connections the core keeps open.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_neo.errors import InvalidRequest
from jupyter_neo.runs.px import OnChange, PxResult, run_px, select_ranks

if TYPE_CHECKING:
    from jupyter_neo.client import Client
    from jupyter_neo.model import Reservation, Run

INIT_SCRIPT = ".neo/px_init.py"
INIT_CODE = '''"""Started by %neo px --start: one warm worker per rank, with the process group up."""
try:
    import torch
    import torch.distributed as dist
except ImportError:  # no torch in the pod: cells still run, without a process group
    torch = None
if torch is not None and not dist.is_initialized():
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
'''
DEFAULT_PULL_LIMIT = 64 * 1024 * 1024


class Ranks:
    """Cells on the ranks of one reservation's hot session."""

    def __init__(self, client: Client, reservation: str | None = None, workspace: str | Path = ".") -> None:
        self.client = client
        self.reservation = reservation
        self.workspace = Path(workspace)
        self._session: tuple[Reservation, Run] | None = None

    def session(self, refresh: bool = False) -> tuple[Reservation, Run]:
        """The reservation and the run whose workers serve cells (looked up once, then cached)."""
        if self._session is None or refresh:
            ref = self.client._reservation(self.reservation).id
            self._session = self.client.run_async(self.client.core.live_session(ref))
        return self._session

    def start(self, nproc_per_node: int | None = None, restart: bool = False, **kwargs: Any) -> Run:
        """Start one persistent worker per rank (idempotent unless ``restart``)."""
        if not restart:
            try:
                return self.session(refresh=True)[1]
            except InvalidRequest:
                pass
        elif self._session is not None or self.reservation is not None:
            try:
                _, old = self.session(refresh=True)
                self.client.stop_run(old.id)
            except InvalidRequest:
                pass
        path = self.workspace / INIT_SCRIPT
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != INIT_CODE:
            path.write_text(INIT_CODE)
        run = self.client.run(
            INIT_SCRIPT,
            reservation=self.reservation,
            nproc_per_node=nproc_per_node,
            workspace=self.workspace,
            hot=True,
            **kwargs,
        )
        if run.error:
            raise InvalidRequest(f"the rank workers did not start: {run.error}")
        self.reservation = run.reservation
        self._session = None
        return run

    def selection(self, ranks: str | None) -> list[int]:
        _, run = self.session()
        return select_ranks(ranks, run.nodes, run.nproc_per_node)

    def _call(
        self,
        action: str,
        ranks: list[int],
        on_change: OnChange | None = None,
        payload: bytes = b"",
        pump: Callable[[], None] | None = None,
        **fields: Any,
    ) -> PxResult:
        core = self.client.core

        def attempt(refresh: bool) -> PxResult:
            res, run = self.session(refresh)

            async def go() -> PxResult:
                conns = await core.connect(res)
                return await run_px(
                    conns, run.id, action, ranks, on_change=on_change, payload=payload, **fields
                )

            return self.client.run_async(go(), pump)

        result = attempt(False)
        if all(result.reply(r).lost for r in ranks):
            # The cached session's workers are gone (e.g. a cold restart by a --hot run with a new
            # world shape): look the session up again once.
            result = attempt(True)
        return result

    def run(
        self,
        code: str,
        ranks: str | None = None,
        on_change: OnChange | None = None,
        pump: Callable[[], None] | None = None,
    ) -> PxResult:
        """Run ``code`` on the selected ranks (``all``, ``0,3``, ``node:1``); values per rank.

        ``on_change`` sees the merged result after every frame (from the client's loop thread);
        ``pump`` is called on the caller's thread while it waits (live displays draw there).
        """
        return self._call("exec", self.selection(ranks), on_change, pump=pump, code=code)

    def pull(self, name: str, rank: int = 0, max_bytes: int = DEFAULT_PULL_LIMIT) -> Any:
        """A copy of ``name`` from one rank's namespace (pickled there; CUDA tensors come as CPU)."""
        result = self._call("pull", self.selection(str(rank)), name=name, max_bytes=max_bytes)
        reply = result.reply(rank)
        if not reply.ok:
            raise InvalidRequest(reply.error or f"pull {name} failed on rank {rank}")
        return pickle.loads(reply.data)  # noqa: S301 (the user's own rank, over an authenticated link)

    def push(self, name: str, value: Any, ranks: str | None = None) -> PxResult:
        """Set ``name`` in the namespace of the selected ranks."""
        if not name.isidentifier():
            raise InvalidRequest(f"{name!r} is not a Python identifier")
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return self._call("push", self.selection(ranks), payload=data, name=name)

    def complete(self, text: str, rank: int = 0) -> list[str]:
        """Tab completion against one rank's namespace."""
        result = self._call("complete", self.selection(str(rank)), text=text)
        return result.reply(rank).matches
