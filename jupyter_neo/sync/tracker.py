"""Which paths of a workspace changed since the last sync, from inotify, without walking the tree.

The resident controller keeps one tracker per (workspace, reservation) it syncs to, so a one-shot
``neo sync`` (or the sync before ``neo run``) rescans only what changed: O(change), not O(tree).

Correctness rests on three rules:

- **A barrier before every read.** inotify queues an event inside the syscall that caused it, so
  an edit finished before ``neo sync`` is already in the kernel queue; but it reaches our callback
  on watchdog's reader thread a moment later. :meth:`ChangeTracker.take` touches a sentinel file
  watched through the *same* inotify descriptor and waits for its event: events are delivered in
  queue order, so when the sentinel arrives every earlier change has been recorded.
- **Unknown means walk.** The first read, a queue overflow (``IN_Q_OVERFLOW``), a directory
  moved (its watch descriptors would name the old path), a changed ``.gitignore``/``.neoignore``
  (the set of watched directories depends on them), a watch limit hit, or a barrier that did not
  come back all make :meth:`take` return None, and the caller does a full, correct scan after
  the watches are rebuilt (rebuilt first, so nothing between the two is missed).
- **One descriptor per rebuild, and only the current one counts.** A rebuild stops the old
  descriptor (its reader thread, its watches) and starts a new one. Events the old reader thread
  had already read are delivered after that; watch descriptor numbers restart at 1 in every
  inotify instance, so such an event would name a directory of the *new* set (a stale
  "deleted" event would drop a live directory's watch, and its later edits would be missed).
  Each descriptor's events therefore go through its own :class:`_Watches`, and a tracker acts
  only on the current one's.
- **A read that was not committed is given back** (:meth:`give_back`): a dry run or a failed
  sync must not lose the paths it consumed.

Linux only (inotify); elsewhere the controller walks, as before. Uses watchdog's inotify layer
(the process's shared ``InotifyFD``: one descriptor and reader thread for every tracker, since
inotify instances are limited per user) rather than its Observer, whose move pairing delays
events by up to 0.5 s and offers no barrier.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path
from typing import Any

from jupyter_neo.sync.ignore import IgnoreRules

BARRIER_TIMEOUT = 2.0

try:
    from watchdog.observers.inotify_c import CallbackId, InotifyFD, Mask
    from watchdog.observers.inotify_c import InotifyConstants as Flags

    _MASK = Mask(
        Flags.IN_CREATE
        | Flags.IN_DELETE
        | Flags.IN_MODIFY
        | Flags.IN_ATTRIB
        | Flags.IN_CLOSE_WRITE
        | Flags.IN_MOVED_FROM
        | Flags.IN_MOVED_TO
        | Flags.IN_DELETE_SELF
        | Flags.IN_MOVE_SELF
        | Flags.IN_DONT_FOLLOW
        | Flags.IN_ONLYDIR
    )
    _SENTINEL_MASK = Mask(Flags.IN_ATTRIB | Flags.IN_DONT_FOLLOW)
    AVAILABLE = True
except (ImportError, OSError, AttributeError):  # not Linux, or no usable libc inotify
    AVAILABLE = False


class _Watches:
    """One inotify descriptor's watches for a tracker (the callback watchdog's reader thread calls).

    Kept apart from the tracker so that events from a replaced descriptor, still being delivered
    by its reader thread, can be told from the current one's and ignored.
    """

    def __init__(self, tracker: ChangeTracker, fd: Any) -> None:
        self.tracker = tracker
        self.fd = fd
        self.dirs: dict[int, str] = {}  # watch descriptor -> directory, relative ("" = root)
        self.sentinel_wd = -1

    def on_event(self, event: Any) -> None:
        self.tracker._on_event(self, event)

    def on_watch_deleted(self, wd: int) -> None:
        self.tracker._on_watch_deleted(self, wd)

    def on_queue_overflow(self) -> None:
        self.tracker._on_queue_overflow(self)


class ChangeTracker:
    """Workspace-relative paths changed under ``root`` since the last :meth:`take`."""

    def __init__(self, root: Path, rules: IgnoreRules, state_dir: Path) -> None:
        self.root = str(root)
        self.rules = rules
        self.state_dir = state_dir
        self.sentinel = str(state_dir / "barrier")
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._lost = True  # nothing is known before the first (full) scan
        self._arrived = threading.Event()
        self._watches: _Watches | None = None  # the current descriptor's; None before the first take
        self.full_scans = 0  # how often take() answered None (tests and status)

    # ------------------------------------------------------------------ watchdog callbacks
    def _on_event(self, watches: _Watches, event: Any) -> None:
        with self._lock:
            if watches is not self._watches:
                return  # a replaced descriptor's event, delivered late
            if event.wd == watches.sentinel_wd:
                self._arrived.set()
                return
            base = watches.dirs.get(event.wd)
            if base is None:
                return
            if not event.name:  # the watched directory itself was deleted or moved
                if event.is_delete_self or event.is_move_self:
                    watches.dirs.pop(event.wd, None)
                    if base == "":
                        self._lost = True
                    else:
                        self._dirty.add(base)
                return
            rel = f"{base}/{os.fsdecode(event.name)}" if base else os.fsdecode(event.name)
            self._dirty.add(rel)
            if IgnoreRules.is_rule_file(rel):
                self._lost = True  # which directories are watched depends on the rules
            if event.is_directory:
                if event.is_moved_from:
                    self._lost = True  # descriptors below it now name another path
                elif (event.is_create or event.is_moved_to) and self.rules.reason(rel, True) is None:
                    self._watch_tree(watches, rel)

    def _on_watch_deleted(self, watches: _Watches, wd: int) -> None:
        with self._lock:
            if watches is not self._watches:
                return
            watches.dirs.pop(wd, None)
            if wd == watches.sentinel_wd:
                self._lost = True

    def _on_queue_overflow(self, watches: _Watches) -> None:
        with self._lock:
            if watches is self._watches:
                self._lost = True

    # ------------------------------------------------------------------ reading
    def take(self) -> set[str] | None:
        """The changed paths since the last call; None when unknown (scan everything)."""
        if self._watches is None or self._lost or not self._barrier():
            self._rebuild()
            return None
        with self._lock:
            if self._lost:
                lost = True
            else:
                lost, out, self._dirty = False, self._dirty, set()
        if lost:
            self._rebuild()
            return None
        # Ignored files in synced directories (editor swap files, *.pyc) wake nothing.
        return {p for p in out if self.rules.reason(p, False) is None or self.rules.reason(p, True) is None}

    def give_back(self, paths: set[str] | None) -> None:
        """Paths a sync consumed without committing (dry run, failure): report them again."""
        with self._lock:
            if paths is None:
                self._lost = True
            else:
                self._dirty |= paths

    def close(self) -> None:
        """Stop this tracker's descriptor: its watches, its reader thread and the descriptor itself.

        Every rebuild calls this, so a long-lived controller whose user renames directories does
        not collect inotify instances (128 per user by default) and reader threads.
        """
        with self._lock:
            watches, self._watches = self._watches, None
        if watches is not None:
            with warnings.catch_warnings(), contextlib.suppress(Exception):
                warnings.simplefilter("ignore", RuntimeWarning)
                watches.fd.stop()  # removes every watch; the reader thread closes the descriptor
                if watches.fd is not threading.current_thread():
                    watches.fd.join(BARRIER_TIMEOUT)

    # ------------------------------------------------------------------ internals
    def _barrier(self) -> bool:
        self._arrived.clear()
        try:
            os.utime(self.sentinel)
        except OSError:
            return False
        return self._arrived.wait(BARRIER_TIMEOUT)

    def _rebuild(self) -> None:
        """Fresh descriptor and watches on every synced directory; then the caller scans in full."""
        self.full_scans += 1
        self.close()
        with self._lock:
            self._dirty, self._lost = set(), False
        if not AVAILABLE:
            self._lost = True
            return
        fd = None
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            Path(self.sentinel).touch()
            fd = InotifyFD()
            fd.start()
            watches = _Watches(self, fd)
            with self._lock:
                self._watches, started = watches, fd
                fd = None  # close() stops it from now on
                watches.sentinel_wd = started.add_callback(
                    os.fsencode(self.sentinel), _SENTINEL_MASK, watches, CallbackId(0)
                )
                self._watch_tree(watches, "")
        except OSError:  # watch limit (ENOSPC), no inotify: walk every time
            self.close()
            if fd is not None:  # started, never handed to close()
                fd.stop()
            with self._lock:
                self._lost = True

    def _watch_tree(self, watches: _Watches, top: str) -> None:
        """Watch ``top`` and every directory below it that the rules do not ignore.

        Called with the lock held, from take() or from the reader thread for a new directory
        (whose content, created before its watch, is covered by its own path being dirty: the
        scanner rescans a dirty directory recursively).
        """
        stack = [top]
        while stack:
            rel = stack.pop()
            full = os.path.join(self.root, rel) if rel else self.root
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a re-used descriptor
                    wd = watches.fd.add_callback(os.fsencode(full), _MASK, watches, CallbackId(1))
            except OSError as exc:
                if rel == "" or exc.errno not in (2, 20):  # ENOENT/ENOTDIR: gone meanwhile
                    self._lost = True
                continue
            watches.dirs[wd] = rel
            try:
                with os.scandir(full) as it:
                    subdirs = [e.name for e in it if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for name in subdirs:
                child = f"{rel}/{name}" if rel else name
                if self.rules.reason(child, True) is not None:
                    continue
                stack.append(child)
