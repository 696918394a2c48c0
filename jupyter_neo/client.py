"""The synchronous Python API: ``Client().reserve(gpus=16)``.

It runs the asynchronous :class:`~jupyter_neo.core.Core` on a private event loop in a background
thread, so it works the same in a script, the ``neo`` CLI and a Jupyter kernel (whose own loop is
already running). Ctrl-C / a kernel interrupt cancels the core's task, which rolls back whatever
it was doing before the call returns.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from jupyter_neo.config import Config, load_config
from jupyter_neo.controller import terminal
from jupyter_neo.core import Core, Progress, _quiet
from jupyter_neo.durations import parse_duration
from jupyter_neo.errors import InvalidRequest
from jupyter_neo.model import ClusterStatus, GangRequest, Reservation, Run
from jupyter_neo.money import load_policy
from jupyter_neo.placement import Candidate
from jupyter_neo.runs.logs import LineCallback, tail_file
from jupyter_neo.runs.spec import RunKind, RunSpec

if TYPE_CHECKING:
    from jupyter_neo.interactive import Ranks
    from jupyter_neo.sync import SyncReport, Watcher

T = TypeVar("T")


C = TypeVar("C", bound=Callable[..., Any] | None)


def bound(callback: C) -> C:
    """``callback`` bound to the caller's terminal (in the controller: the requesting client).

    Callbacks run wherever the core calls them, e.g. in an agent connection's reader task opened
    by another request; this pins their output to the request that passed them.
    """
    term = terminal.CURRENT.get()
    if term is None or callback is None:
        return callback

    def pinned(*args: Any, **kwargs: Any) -> Any:
        token = terminal.CURRENT.set(term)
        try:
            return callback(*args, **kwargs)
        finally:
            terminal.CURRENT.reset(token)

    return pinned  # type: ignore[return-value]


def run_on(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, T],
    pump: Callable[[], None] | None = None,
    cancelled: threading.Event | None = None,
) -> T:
    """Wait in this thread for ``coro`` run as a task on ``loop`` (another thread's loop).

    ``pump`` is called while waiting (widget events). A ``KeyboardInterrupt`` here, or
    ``cancelled`` being set (the controller's Ctrl-C of one request), cancels the task, waits for
    its clean-up (rollback, stopping ranks) and raises ``KeyboardInterrupt``.
    """
    done = threading.Event()
    box: dict[str, Any] = {}

    async def runner() -> None:
        try:
            box["value"] = await coro
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    task_box: dict[str, asyncio.Task[None]] = {}

    def start() -> None:
        task_box["task"] = loop.create_task(runner())

    # The task is created in a copy of this thread's context: a request's terminal follows it.
    loop.call_soon_threadsafe(start)
    try:
        while not done.wait(0.05 if pump else 0.1):
            if pump is not None:
                pump()
            if cancelled is not None and cancelled.is_set():
                raise KeyboardInterrupt
    except KeyboardInterrupt:

        def cancel() -> None:  # on the loop, after start(): the task exists by then
            task_box["task"].cancel()

        loop.call_soon_threadsafe(cancel)
        done.wait()
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class Runner(Protocol):
    """How a :class:`Client` waits for the core: its own loop thread, or the controller's loop."""

    def run(self, coro: Coroutine[Any, Any, T], pump: Callable[[], None] | None, cancellable: bool) -> T: ...

    def wait(self, seconds: float | None) -> None: ...


class _LoopThread:
    """One event loop in a daemon thread, shared by the in-process Clients of a process."""

    _instance: _LoopThread | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="jupyter-neo-loop", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> _LoopThread:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def run(
        self, coro: Coroutine[Any, Any, T], pump: Callable[[], None] | None = None, cancellable: bool = True
    ) -> T:
        """Wait for ``coro`` on the loop thread; Ctrl-C (a signal in this thread) cancels it."""
        return run_on(self.loop, coro, pump)

    def wait(self, seconds: float | None) -> None:
        """Sleep; Ctrl-C interrupts it as usual in-process."""
        if seconds is None:
            threading.Event().wait()
        else:
            time.sleep(seconds)


def gang_request(
    config: Config, *, idle_ttl: str | float | None = "default", workspace: str | Path = ".", **fields: Any
) -> GangRequest:
    """Validate a gang request the same way for every surface (CLI flags, magics, REST bodies).

    The workspace's ``neo.yaml`` policy fills residency, max price, budget and datasets when the
    request does not say (see :mod:`jupyter_neo.money`).
    """
    from pydantic import ValidationError

    ttl = config.default_idle_ttl if idle_ttl == "default" else parse_duration(idle_ttl)
    fields = {k: v for k, v in fields.items() if v is not None}
    policy = load_policy(Path(workspace))
    if policy.residency and not fields.get("residency"):
        fields["residency"] = policy.residency
    if policy.max_price is not None and "max_price" not in fields:
        fields["max_price"] = policy.max_price
    if policy.budget is not None and "budget" not in fields:
        fields["budget"] = policy.budget
    if policy.datasets and not fields.get("data"):
        fields["data"] = policy.datasets
    try:
        return GangRequest(idle_ttl=ttl, **fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "request"
        flag = "--" + field.replace("_", "-")
        raise InvalidRequest(f"{flag}: {err['msg'].lower()} (got {err.get('input')!r})") from None


def require_data(res: Reservation, refs: list[str]) -> None:
    """``neo run -r ID --data NAME``: the named gang must hold the data, never silently without it."""
    from jupyter_neo.core import holds_data
    from jupyter_neo.errors import Conflict

    missing = [ref for ref in refs if not holds_data(res, [ref])]
    if missing:
        raise Conflict(
            f"reservation {res.id} does not hold dataset {missing[0]} as asked",
            f"run without --reservation to place a gang with it, or: neo reserve --gpus {res.gpus} --data {missing[0]}",
        )


def prepare_run(
    config: Config,
    *,
    target: str,
    args: list[str] | None = None,
    kind: RunKind = "script",
    reservation: str | None = None,
    gpus: int | None = None,
    nproc_per_node: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float | str | None = None,
    workspace: str | Path = ".",
    hot: bool = False,
    sync: bool = True,
    detach: bool = False,
    label: str | None = None,
    **request: Any,
) -> tuple[RunSpec, GangRequest | None, str | None, list[str]]:
    """A run's spec and gang request, validated the same way for every surface (``workspace``
    absolute): ``(spec, gang or None, reservation ref or None, datasets it must hold)``."""
    spec = RunSpec(
        kind=kind,
        target=target,
        args=list(args or []),
        nproc_per_node=nproc_per_node,
        env=dict(env or {}),
        timeout=parse_duration(timeout),
        workspace=Path(workspace).resolve(),
        hot=hot,
        sync=sync,
        label=label,
        detach=detach,
    )
    spec.validate()
    gang = gang_request(config, workspace=spec.workspace, gpus=gpus, **request) if gpus is not None else None
    return spec, gang, reservation, list(request.get("data") or [])


async def run_prepared(
    core: Core,
    spec: RunSpec,
    gang: GangRequest | None,
    reservation: str | None,
    data: list[str],
    *,
    on_line: LineCallback | None = None,
    on_update: Callable[[Run], None] | None = None,
    progress: Progress = _quiet,
) -> Run:
    """Pick (or reserve) the gang and run ``spec`` on it until it ends."""
    res = await core.pick_reservation(reservation, gang, progress)
    require_data(res, data)
    return await core.run(res, spec, on_line, on_update)


def ref_of(ref: str | Reservation) -> str:
    """The id to look up: scripts pass back the :class:`Reservation` that ``reserve`` returned."""
    return ref.id if isinstance(ref, Reservation) else ref


def only_reservation(active: list[Reservation]) -> Reservation:
    """The one active reservation a command without an id means (sync, ``%neo sync``)."""
    if len(active) != 1:
        from jupyter_neo.errors import NotFound

        if not active:
            raise NotFound("no active reservation to sync to", "make one with: neo reserve --gpus N")
        raise InvalidRequest(
            f"{len(active)} reservations are active; say which one",
            "pass its id: " + ", ".join(r.id for r in active),
        )
    return active[0]


class Client:
    """jupyter-neo from Python: clusters, reservations and (later) sync and runs."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        home: str | Path | None = None,
        config_path: str | Path | None = None,
        core: Core | None = None,
        runner: Runner | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        """In a script: an in-process core on a private loop thread (the default, see
        docs/architecture.md "Clients"). The controller passes its own ``core`` and ``runner`` and
        the client's ``cwd``, against which relative workspace paths are resolved."""
        self._runner: Runner = runner or _LoopThread.get()
        self._owns_core = core is None
        self.cwd = Path(cwd) if cwd is not None else None
        if core is None:
            if config is None:
                config = load_config(Path(config_path) if config_path else None, Path(home) if home else None)
            core = self._runner.run(self._make_core(config), None, False)
        self.core: Core = core

    @staticmethod
    async def _make_core(config: Config) -> Core:
        return Core(config)

    def run_async(
        self, coro: Coroutine[Any, Any, T], pump: Callable[[], None] | None = None, cancellable: bool = True
    ) -> T:
        """Run a coroutine of the core on the client's loop (used by the surfaces).

        ``cancellable=False`` for clean-up that must run even after the request was cancelled.
        """
        return self._runner.run(coro, pump, cancellable)

    @property
    def config(self) -> Config:
        """The configuration this client's core runs with (clusters, defaults, transfer)."""
        return self.core.config

    def wait(self, seconds: float | None = None) -> None:
        """Sleep (forever with None) until Ctrl-C, which raises ``KeyboardInterrupt`` as usual."""
        self._runner.wait(seconds)

    def path(self, path: str | Path) -> Path:
        """``path`` made absolute against the caller's working directory."""
        return (self.cwd / path) if self.cwd is not None else Path(path).absolute()

    def clusters(self) -> list[ClusterStatus]:
        return self.run_async(self.core.clusters())

    def reserve(
        self,
        gpus: int,
        *,
        nodes: int | None = None,
        gpu_type: str | None = None,
        cluster: str | None = None,
        region: str | None = None,
        residency: list[str] | None = None,
        max_price: float | None = None,
        idle_ttl: str | float | None = "default",
        budget: float | None = None,
        name: str | None = None,
        data: list[str] | None = None,
        workspace: str | Path = ".",
        progress: Progress = _quiet,
    ) -> Reservation:
        """Reserve ``gpus`` GPUs as one gang (all or nothing) and return it ready.

        ``data`` names datasets the gang needs (``"imagenet"`` read-only, ``"scratch:rw"``): the gang
        goes where they are or may legally be copied, and ranks find them at ``NEO_DATA_<NAME>``.
        """
        request = self.request(
            gpus=gpus,
            nodes=nodes,
            gpu_type=gpu_type,
            cluster=cluster,
            region=region,
            residency=residency,
            max_price=max_price,
            idle_ttl=idle_ttl,
            budget=budget,
            name=name,
            data=data,
            workspace=workspace,
        )
        return self.run_async(self.core.reserve(request, bound(progress)))

    def request(self, *, idle_ttl: str | float | None = "default", **fields: Any) -> GangRequest:
        """Validate a gang request the same way for every surface."""
        fields["workspace"] = self.path(fields.get("workspace") or ".")
        return gang_request(self.core.config, idle_ttl=idle_ttl, **fields)

    def explain(self, **fields: Any) -> list[Candidate]:
        """Every cluster a request could go to, with why it was or was not chosen (``--explain``)."""
        return self.run_async(self.core.explain(self.request(**fields)))

    def dry_run(self, gang: str | None, fmt: str, **fields: Any) -> str:
        """The Kubernetes objects a reserve would create, rendered as YAML or JSON; creates nothing."""
        return self.run_async(self.core.dry_run(self.request(**fields), gang, fmt))

    def history(self) -> list[Reservation]:
        """Every reservation the store knows, released ones included."""
        return self.run_async(self.core.history())

    def status(self, ref: str | Reservation | None = None) -> list[Reservation]:
        if ref:
            return [self.run_async(self.core.status_one(ref_of(ref)))]
        return self.run_async(self.core.status())

    def recorded(self, ref: str | Reservation) -> Reservation:
        """A reservation as last recorded, without reconciling or waiting on the loop.

        Safe inside run callbacks, which run on the client's own loop thread.
        """
        return self.core.recorded(ref_of(ref))

    def release(self, ref: str | Reservation) -> Reservation:
        return self.run_async(self.core.release(ref_of(ref)))

    def release_all(self) -> list[Reservation]:
        return self.run_async(self.core.release_all())

    def extend(
        self,
        ref: str | Reservation,
        *,
        idle_ttl: str | float | Literal["keep"] | None = "keep",
        budget: float | Literal["keep"] | None = "keep",
    ) -> Reservation:
        """Change a live reservation's idle TTL and/or budget (``"keep"`` leaves a field unchanged)."""
        return self.run_async(self.core.extend(ref_of(ref), idle_ttl=idle_ttl, budget=budget))

    def run(
        self,
        target: str,
        args: list[str] | None = None,
        *,
        workspace: str | Path = ".",
        on_line: LineCallback | None = None,
        on_update: Callable[[Run], None] | None = None,
        progress: Progress = _quiet,
        **fields: Any,
    ) -> Run:
        """Run a script (or ``kind="module"``/``"cmd"``) on every rank of a gang; returns the finished run.

        ``fields`` are :func:`prepare_run`'s: ``kind``, ``reservation``, ``gpus`` (and the other
        gang request fields), ``nproc_per_node``, ``env``, ``timeout``, ``hot``, ``sync``,
        ``detach``, ``label``. Without ``reservation`` a ready gang that fits is reused, else one
        is reserved (and kept warm).
        """
        spec, gang, ref, data = prepare_run(
            self.core.config, target=target, args=args, workspace=self.path(workspace), **fields
        )
        return self.run_async(
            run_prepared(
                self.core,
                spec,
                gang,
                ref,
                data,
                on_line=bound(on_line),
                on_update=bound(on_update),
                progress=bound(progress),
            )
        )

    def cost(self, since_seconds: float = 30 * 86400.0) -> dict[str, Any]:
        """Spend by cluster and by reservation over the window, from the ledger (survives restarts)."""
        return self.run_async(self.core.cost(since_seconds))

    def record_check(self, run: Run, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Analyse a ``neo check`` run's measurements and keep the report with its reservation."""
        return self.run_async(self.core.record_check(run.reservation, results))

    def datasets(self) -> list[dict[str, Any]]:
        """Every configured dataset: size, residency and where it lives (``neo datasets``)."""
        return self.core.datasets()

    def runs(self, limit: int = 50) -> list[Run]:
        return self.run_async(self.core.runs(limit))

    def get_run(self, run_id: str) -> Run:
        return self.run_async(self.core.run_record(run_id))

    def stop_run(self, run_id: str) -> Run:
        """Stop a run that another process (a kernel, a terminal) is supervising."""
        return self.run_async(self.core.stop_run(run_id))

    def logs(self, run_id: str, rank: int = 0, tail: int = 0) -> list[str]:
        """The lines rank ``rank`` printed (the last ``tail`` of them if given)."""
        run = self.get_run(run_id)
        return tail_file(Path(run.log_dir) / f"rank{rank}.log", tail)

    def ping(self, ref: str | Reservation) -> list[float]:
        return self.run_async(self.core.ping(ref_of(ref)))

    def _reservation(self, ref_or_res: str | Reservation | None) -> Reservation:
        """A reservation by id or name; None means the only active one."""
        if isinstance(ref_or_res, Reservation):
            return ref_or_res
        if ref_or_res:
            return self.run_async(self.core.status_one(ref_or_res))
        return only_reservation(self.status())

    def sync(
        self,
        ref_or_res: str | Reservation | None = None,
        root: str | Path = ".",
        dry_run: bool = False,
        progress: Progress | None = None,
        on_transfer: Callable[[int, int], None] | None = None,
    ) -> SyncReport:
        """Mirror ``root`` into every pod of the reservation now; see :mod:`jupyter_neo.sync`.

        ``on_transfer(moved, planned)`` follows the content upload in bytes (progress bars).
        """
        res = self._reservation(ref_or_res)
        return self.run_async(
            self.core.sync(
                res,
                self.path(root),
                progress=bound(progress),
                dry_run=dry_run,
                on_transfer=bound(on_transfer),
            )
        )

    def watch(
        self,
        ref_or_res: str | Reservation | None = None,
        root: str | Path = ".",
        *,
        on_report: Callable[[SyncReport], None] | None = None,
        debounce: float = 0.05,
    ) -> WatchHandle:
        """Sync now, then on every change until ``handle.stop()``; reports go to ``on_report``."""
        from jupyter_neo.sync import Watcher
        from jupyter_neo.sync.push import gang_sync_for

        res = self._reservation(ref_or_res)
        gang = gang_sync_for(self.core, res, self.path(Path(root).expanduser()))
        watcher = Watcher(gang, on_report=bound(on_report), debounce=debounce)
        self.run_async(watcher.start())
        return WatchHandle(self, watcher)

    def ranks(self, reservation: str | None = None, workspace: str | Path = ".") -> Ranks:
        """Interactive cells on the reservation's warm rank workers (see :mod:`jupyter_neo.interactive`)."""
        from jupyter_neo.interactive import Ranks

        return Ranks(self, reservation, workspace)

    def close(self) -> None:
        if self._owns_core:
            self.run_async(self.core.close(), cancellable=False)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WatchHandle:
    """A running watcher started by :meth:`Client.watch`; ``stop()`` ends it."""

    def __init__(self, client: Client, watcher: Watcher) -> None:
        self._client = client
        self.watcher = watcher

    @property
    def reports(self) -> list[SyncReport]:
        return list(self.watcher.reports)

    def stop(self) -> None:
        self._client.run_async(self.watcher.stop(), cancellable=False)

    def __enter__(self) -> WatchHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
