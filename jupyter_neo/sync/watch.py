"""Continuous mode: watchdog events, debounced, narrow each sync to the paths they name.

Events arrive on watchdog's thread and are handed to the event loop; a sync starts once no new
event came for a quiet period (or ``max_delay`` after the first), carrying only the reported
paths as hints, so an edit costs O(change) instead of a tree walk. The quiet period depends on
what the events say: when every changed path was last seen closed after writing (inotify's
``IN_CLOSE_WRITE``), renamed into place or deleted, its writer is done and ``settle`` (5 ms, to
gather the rest of a burst) is enough; while a path was only seen modified (a writer still has it
open), the sync waits ``debounce`` (50 ms) of quiet as before. Editors save by writing and closing
a file or by renaming a temporary one over it, so a save reaches the pods without the 50 ms. Events inside
ignored directories (``.git/`` on every commit) are dropped before they wake anything. Inotify can
miss events (queue overflow, editors' rename dances), so a full rescan runs every
``rescan_every`` seconds regardless; it is cheap thanks to the stat cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from jupyter_neo.errors import NeoError
from jupyter_neo.sync.push import GangSync
from jupyter_neo.sync.report import SyncReport

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

OnReport = Callable[[SyncReport], None]
DONE, WRITING, NEUTRAL = "done", "writing", "neutral"  # what an event says about a path's writer
OnError = Callable[[NeoError], None]


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write") or (kind == "modified" and event.is_directory):
            # A directory's "modified" is watchdog's echo of an entry created, deleted or moved in
            # it, each reported by its own event; hinting the directory would rescan its subtree.
            return
        if kind in ("closed", "moved", "deleted") or (kind == "created" and event.is_directory):
            state = DONE  # written and closed, renamed, deleted, a new directory: nobody writes it
        elif kind == "attrib":
            state = NEUTRAL  # a chmod or a touch says nothing about a writer
        else:
            state = WRITING  # modified or created: its writer may still hold it open
        paths = [event.src_path, getattr(event, "dest_path", "")]
        for raw in paths:
            if raw:
                self.watcher.notify(os.fsdecode(raw), state)


class Watcher:
    """Keeps one workspace in sync with one reservation until :meth:`stop`."""

    def __init__(
        self,
        gang: GangSync,
        *,
        on_report: OnReport | None = None,
        on_error: OnError | None = None,
        debounce: float = 0.05,
        settle: float = 0.005,
        max_delay: float = 0.5,
        rescan_every: float = 60.0,
    ) -> None:
        self.gang = gang
        self.on_report = on_report
        self.on_error = on_error
        self.debounce = debounce
        self.settle = min(settle, debounce)
        self.max_delay = max_delay
        self.rescan_every = rescan_every
        self.reports: list[SyncReport] = []
        self._told: dict[str, str] = {}  # the skipped paths (and why) the last report named
        self.errors: list[NeoError] = []
        self._pending: set[str] = set()
        self._writing: set[str] = set()  # pending paths last seen modified, not yet closed
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observer: BaseObserver | None = None
        self._task: asyncio.Task[None] | None = None
        self._root = os.path.realpath(gang.root)

    def notify(self, abs_path: str, state: str = NEUTRAL) -> None:
        """Called on watchdog's thread for every path an event names, with what it says (DONE...)."""
        rel = os.path.relpath(os.path.realpath(os.path.dirname(abs_path)), self._root)
        if rel.startswith(".."):
            return
        rel = os.path.basename(abs_path) if rel == "." else f"{rel}/{os.path.basename(abs_path)}"
        rel = rel.replace(os.sep, "/")
        top = rel.split("/", 1)[0]
        if top == ".git" and rel != ".git/info/exclude":
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._add, rel, state)

    def _add(self, rel: str, state: str) -> None:
        self._pending.add(rel)
        if state == DONE:
            self._writing.discard(rel)
        elif state == WRITING:
            self._writing.add(rel)
        self._wake.set()

    async def start(self) -> SyncReport:
        """Sync once in full, then start watching; returns the first report."""
        self.gang.check_root()
        self._loop = asyncio.get_running_loop()
        self._observer = Observer()
        self._observer.schedule(_Handler(self), str(self.gang.root), recursive=True)
        self._observer.start()
        first = await self.gang.sync(None)
        self._record(first)
        self._task = asyncio.ensure_future(self._run())
        return first

    async def _run(self) -> None:
        last_full = time.monotonic()
        last_save = time.monotonic()
        while True:
            timeout = max(0.0, self.rescan_every - (time.monotonic() - last_full))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            if self._wake.is_set():
                await self._quiet()
            self._wake.clear()
            hints: set[str] | None = set(self._pending)
            self._pending.clear()
            self._writing.clear()
            if time.monotonic() - last_full >= self.rescan_every:
                hints, last_full = None, time.monotonic()
            if hints is not None and not hints:
                continue
            persist = time.monotonic() - last_save > 10
            try:
                report = await self.gang.sync(hints, persist=persist)
            except NeoError as exc:
                self.errors.append(exc)
                if self.on_error is not None:
                    self.on_error(exc)
                continue
            if persist:
                last_save = time.monotonic()
            # A sync that moved nothing is still news when it refused something new (a symlink
            # out of the workspace, an unreadable file): the user hears why it is not on the pods.
            if not report.noop or any(self._told.get(p) != why for p, why in report.skipped.items()):
                self._record(report)

    async def _quiet(self) -> None:
        """Wait until no event came for the quiet period, chosen anew at every event.

        A save arrives as "modified" then "closed" a fraction of a millisecond apart: deciding at
        the first event would wait the long debounce for a writer that has already finished.
        """
        first_event = time.monotonic()
        while True:
            self._wake.clear()
            quiet = self.debounce if self._writing else self.settle
            left = self.max_delay - (time.monotonic() - first_event)
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), min(quiet, left))
            except TimeoutError:
                return  # quiet long enough

    def _record(self, report: SyncReport) -> None:
        self.reports.append(report)
        self._told = dict(report.skipped)
        if self.on_report is not None:
            self.on_report(report)

    async def stop(self) -> None:
        """Stop watching; the stat cache is saved so the next ``neo sync`` starts warm."""
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 5)
            self._observer = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(OSError):  # the cache only saves re-hashing (a full disk)
            await asyncio.to_thread(self.gang.scanner.save)
