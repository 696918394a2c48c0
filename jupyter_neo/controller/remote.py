"""The surfaces' side of the controller's ``call`` and ``subscribe`` requests (docs/protocol.md).

A kernel's ``%neo`` magics call :func:`call` (blocking: the cell waits; a kernel interrupt sends
the cancel frame and waits for the run to be stopped and recorded); the Jupyter server calls
:func:`acall` and :func:`subscribe` on its own event loop (the connect, which may start a
controller, happens in a thread: the server's loop never blocks). Either way the controller is
the one of ``$NEO_HOME``, started on demand exactly as the CLI starts it (:func:`.client.connect`).

A typed error frame is raised as the :mod:`jupyter_neo.errors` type it names, so a surface renders
it as it would render an in-process error. :class:`.client.Unavailable` means "no controller can
serve this" (``NEO_CONTROLLER=off``, another ``NEO_*`` environment): the caller runs the verb
in-process instead, as the CLI does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from jupyter_neo.controller import client, wire
from jupyter_neo.errors import InternalError, NeoError

log = logging.getLogger("jupyter_neo.controller")
OnEvent = Callable[[dict[str, Any]], None]
OnChange = Callable[[str, str, str], None]


def enabled() -> bool:
    """Whether surfaces go through the controller (``NEO_CONTROLLER=off`` keeps them in-process)."""
    return os.environ.get("NEO_CONTROLLER", "on") != "off"


class ControllerLost(NeoError):
    """The controller exited while answering (killed); the next call starts a new one."""

    http_status = 503
    code = "controller_lost"


def _request(kind: str, **fields: Any) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k in client.TERMINAL_VARS or k in wire.PER_REQUEST}
    return {
        "type": kind,
        "protocol": wire.PROTOCOL,
        "env": env,
        "fingerprint": wire.env_fingerprint(os.environ),
        **fields,
    }


def error_from(msg: dict[str, Any]) -> NeoError:
    """The :mod:`jupyter_neo.errors` exception a typed error frame names."""
    from jupyter_neo import errors

    cls = getattr(errors, str(msg.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, NeoError)):
        cls = InternalError
    return cls(str(msg.get("message")), msg.get("hint"))


def _answer(msg: dict[str, Any] | None, on_event: OnEvent | None) -> tuple[bool, Any]:
    """(done, value) for one frame of a call's answer; raises what ends it badly."""
    if msg is None:
        raise ControllerLost(
            "the neo controller exited while answering", "run the command again (a new one starts)"
        )
    kind = msg.get("type")
    if kind == "event":
        if on_event is not None:
            on_event(msg)
        return False, None
    if kind == "result":
        return True, msg.get("value")
    if kind == "cancelled":
        raise KeyboardInterrupt
    if kind == "env_mismatch":
        raise client.Unavailable("the controller runs with another environment")
    if kind == "error":
        if "class" in msg:
            raise error_from(msg)
        raise client.Refused(str(msg.get("message")))
    return False, None


HELLO_TRIES = 5


def _connect(home: str) -> Any:
    """A connection to the controller that said hello, starting one if needed.

    A connect that lands while a killed controller's socket is being torn down is accepted and
    then closed before the hello: that is a dead controller, not a refusal, so try again (the
    next connect finds no listener and starts a new one).
    """
    for attempt in range(HELLO_TRIES):
        sock = client.connect(home)
        try:
            client.hello(sock)
            return sock
        except client.Unavailable:
            sock.close()
            if attempt == HELLO_TRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
        except BaseException:
            sock.close()
            raise
    raise AssertionError("unreachable")


def call(verb: str, params: dict[str, Any] | None = None, on_event: OnEvent | None = None) -> Any:
    """One verb through the controller, waiting in this thread; events go to ``on_event``.

    In the main thread a Ctrl-C (a kernel interrupt) sends the cancel frame and keeps reading
    until the controller says the call ended (a run: stopped on every rank and recorded), then
    raises ``KeyboardInterrupt``; a second one stops waiting.
    """
    sock = _connect(client.home_dir())
    try:
        wire.send(sock, _request("call", verb=verb, params=params or {}))
        cancelled: list[bool] = []

        def on_sigint(signum: int, frame: object) -> None:
            if cancelled:
                raise KeyboardInterrupt
            cancelled.append(True)
            with contextlib.suppress(OSError):
                wire.send(sock, {"type": "cancel"})

        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, on_sigint) if main else None
        try:
            while True:
                done, value = _answer(wire.recv(sock), on_event)
                if done:
                    if cancelled:
                        raise KeyboardInterrupt
                    return value
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
    finally:
        sock.close()


def command(argv: list[str], cwd: str) -> tuple[int, str]:
    """A ``neo`` command line run by the controller: stdout printed here as it comes; returns
    (exit code, what it wrote to stderr) so the caller can turn an error into its own words."""
    sock = _connect(client.home_dir())
    err: list[str] = []
    try:
        wire.send(
            sock,
            _request("cli", argv=argv, cwd=cwd, tty={"stdout": False, "stderr": False}, columns=None),
        )
        while True:
            msg = wire.recv(sock)
            if msg is None:
                raise ControllerLost("the neo controller exited while running the command")
            kind = msg.get("type")
            if kind == "out" and msg.get("fd") == 1:
                sys.stdout.write(str(msg.get("data", "")))
                sys.stdout.flush()
            elif kind == "out":
                err.append(str(msg.get("data", "")))
            elif kind == "exit":
                return int(msg.get("code", 1)), "".join(err)
            else:
                _answer(msg, None)
    finally:
        sock.close()


async def _open(home: str, start: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection on the running loop; finding or starting the controller happens in a thread.
    Retried like :func:`_connect` when a dying controller closes it before its hello."""
    for attempt in range(HELLO_TRIES):
        sock = await asyncio.to_thread(client.connect, home, start)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        try:
            msg = await wire.read(reader)
            if msg is not None and msg.get("type") == "hello":
                if msg.get("protocol") != wire.PROTOCOL:
                    raise client.Refused(wire.mismatch(msg.get("protocol"), "controller"))
                return reader, writer
        except BaseException:
            writer.close()
            raise
        writer.close()
        await asyncio.sleep(0.05 * (attempt + 1))
    raise client.Unavailable("the controller closed the connection")


async def acall(
    verb: str, params: dict[str, Any] | None = None, on_event: OnEvent | None = None, home: str | None = None
) -> Any:
    """:func:`call` for an event loop (the Jupyter server's): never blocks the loop; cancelling
    the awaiting task closes the connection, which cancels the call in the controller."""
    reader, writer = await _open(home or client.home_dir(), True)
    try:
        writer.write(wire.encode(_request("call", verb=verb, params=params or {})))
        while True:
            done, value = _answer(await wire.read(reader), on_event)
            if done:
                return value
    finally:
        writer.close()


async def subscribe(
    on_change: OnChange,
    interval: float,
    home: str | None = None,
    on_subscribed: Callable[[int], None] | None = None,
) -> None:
    """Change events from the controller: reconnects when it goes away; returns only when the
    controller runs with another ``NEO_*`` environment (the caller then works in-process).

    After a crash (the stream ends without a word) the next connect starts a new controller, so
    budget enforcement and events resume without the caller restarting; after a ``neo daemon
    stop`` (a ``bye`` frame) it only reconnects once something else started one.
    """
    where = home or client.home_dir()
    start = True
    while True:
        try:
            reader, writer = await _open(where, start)
        except client.Unavailable:
            await asyncio.sleep(1.0)
            continue
        except (client.Refused, OSError) as exc:
            log.warning("jupyter-neo: cannot subscribe to the controller: %s", exc)
            await asyncio.sleep(5.0)
            continue
        start = True
        try:
            writer.write(wire.encode(_request("subscribe", interval=interval)))
            while True:
                msg = await wire.read(reader)
                if msg is None:
                    break
                kind = msg.get("type")
                if kind == "change":
                    on_change(str(msg["kind"]), str(msg["id"]), str(msg["state"]))
                elif kind == "subscribed" and on_subscribed is not None:
                    on_subscribed(int(msg.get("pid") or 0))
                elif kind == "bye":
                    start = False
                    break
                elif kind == "env_mismatch":
                    return  # this controller cannot serve the caller: it falls back to in-process
        finally:
            writer.close()
        await asyncio.sleep(0.2)
