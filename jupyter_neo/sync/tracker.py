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
        self._dirs: dict[int, str] = {}  # watch descriptor -> directory, relative ("" = root)
        self._sentinel_wd = -1
        self._arrived = threading.Event()
        self._fd: Any = None
        self._dir_id = CallbackId(id(self) * 2) if AVAILABLE else 0
        self._sentinel_id = CallbackId(id(self) * 2 + 1) if AVAILABLE else 0
        self.full_scans = 0  # how often take() answered None (tests and status)

    # ------------------------------------------------------------------ watchdog callbacks
    def on_event(self, event: Any) -> None:
        if event.wd == self._sentinel_wd:
            self._arrived.set()
            return
        with self._lock:
            base = self._dirs.get(event.wd)
            if base is None:
                return
            if not event.name:  # the watched directory itself was deleted or moved
                if event.is_delete_self or event.is_move_self:
                    self._dirs.pop(event.wd, None)
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
                    self._watch_tree(rel, ignore=True)

    def on_watch_deleted(self, wd: int) -> None:
        with self._lock:
            self._dirs.pop(wd, None)
            if wd == self._sentinel_wd:
                self._lost = True

    def on_queue_overflow(self) -> None:
        with self._lock:
            self._lost = True

    # ------------------------------------------------------------------ reading
    def take(self) -> set[str] | None:
        """The changed paths since the last call; None when unknown (scan everything)."""
        if self._fd is None or self._lost or not self._barrier():
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
        """Remove this tracker's watches from the shared descriptor."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with self._lock:
            mine = [(wd, self._dir_id) for wd in self._dirs]
            self._dirs = {}
        if self._sentinel_wd >= 0:
            mine.append((self._sentinel_wd, self._sentinel_id))
            self._sentinel_wd = -1
        with warnings.catch_warnings(), contextlib.suppress(Exception):
            warnings.simplefilter("ignore", RuntimeWarning)
            fd.remove_callbacks(mine)

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
            self._dirty, self._dirs, self._lost = set(), {}, False
        if not AVAILABLE:
            self._lost = True
            return
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            Path(self.sentinel).touch()
            fd = InotifyFD()
            fd.start()
            self._fd = fd
            self._sentinel_wd = fd.add_callback(
                os.fsencode(self.sentinel), _SENTINEL_MASK, self, CallbackId(0)
            )
            with self._lock:
                self._watch_tree("", ignore=True)
        except OSError:  # watch limit (ENOSPC), no inotify: walk every time
            self.close()
            with self._lock:
                self._lost = True

    def _watch_tree(self, top: str, *, ignore: bool) -> None:
        """Watch ``top`` and every directory below it (skipping ignored ones when ``ignore``).

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
                    wd = self._fd.add_callback(os.fsencode(full), _MASK, self, self._dir_id)
            except OSError as exc:
                if rel == "" or exc.errno not in (2, 20):  # ENOENT/ENOTDIR: gone meanwhile
                    self._lost = True
                continue
            self._dirs[wd] = rel
            try:
                with os.scandir(full) as it:
                    subdirs = [e.name for e in it if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for name in subdirs:
                child = f"{rel}/{name}" if rel else name
                if ignore and self.rules.reason(child, True) is not None:
                    continue
                stack.append(child)
