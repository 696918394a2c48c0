"""Scan: the local manifest, its root digest, and the stat cache that keeps rescans cheap.

A manifest maps a workspace-relative path (``str``; non-UTF-8 bytes kept as surrogate escapes,
exactly as ``os.fsdecode`` gives them) to an :class:`Entry`: kind (file, symlink, directory),
mode bits, content digest or link target. Its root digest is the additive multiset hash of
:func:`neo_agent.workspace_ops.entry_hash` (shared with the agent), updated in O(change).

Re-hashing is avoided the way git's index and Mutagen's cache do it: a file whose
(dev, inode, size, mtime_ns, ctime_ns) did not change keeps its digest. An entry hashed in the
same timestamp tick as it was last written is "racy" and is hashed once more on the next scan.
A watcher narrows a scan to the paths it reported (``hints``); a full scan walks everything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from neo_agent.workspace_ops import ROOT_MOD, entry_hash, link_escapes, root_hex

from jupyter_neo.errors import InvalidRequest
from jupyter_neo.sync import files
from jupyter_neo.sync.files import Ident, Swapped
from jupyter_neo.sync.ignore import IgnoreRules

RACY_NS = 20_000_000  # files written this close to their hashing are re-hashed next scan
CACHE_VERSION = 1


class Entry(NamedTuple):
    """One manifest entry; ``key`` is the stat fingerprint (None: re-hash on next scan)."""

    kind: str  # "f" file, "l" symlink, "d" directory
    mode: int
    ref: str  # sha256 hex for files, target for symlinks, "" for directories
    size: int = 0
    key: tuple[int, int, int, int, int] | None = None

    def wire(self, path: str) -> list[object]:
        return [path, self.kind, self.mode, self.ref]

    def same(self, other: Entry | None) -> bool:
        return other is not None and (self.kind, self.mode, self.ref) == (other.kind, other.mode, other.ref)


def contribution(path: str, e: Entry) -> int:
    return int(entry_hash(path, e.kind, e.mode, e.ref))


@dataclass
class Manifest:
    """Entries, their root digest and a digest refcount (renames and copies cost no transfer)."""

    entries: dict[str, Entry] = field(default_factory=dict)
    root: int = 0
    # digest -> files holding it; a count that falls to 0 stays (see :meth:`put`), so ask holds()
    digests: Counter[str] = field(default_factory=Counter)
    dirs: int = 0  # directory entries, so the file count is O(1)
    unheld: int = 0  # digests at count 0

    def holds(self, digest: str) -> bool:
        """Whether some file of the manifest has this content (the pods then hold it too)."""
        return self.digests.get(digest, 0) > 0

    @property
    def files(self) -> int:
        return len(self.entries) - self.dirs

    @property
    def root_hex(self) -> str:
        return str(root_hex(self.root))

    def copy(self) -> Manifest:
        return Manifest(dict(self.entries), self.root, Counter(self.digests), self.dirs, self.unheld)

    def put(self, path: str, entry: Entry | None) -> None:
        """Set (or with None remove) one entry, keeping root and refcounts in step."""
        # Each scan copies the manifest, and CPython copies a dict without deleted slots as one
        # block (~5x faster at 12k entries than one with them). So an entry is overwritten in
        # place rather than popped and re-added, and a digest whose count falls to 0 stays until
        # a quarter of them are such (then one compaction): an edit leaves both dicts clean.
        old = self.entries.get(path) if entry is not None else self.entries.pop(path, None)
        if old is not None:
            self.dirs -= old.kind == "d"
            self.root = (self.root - contribution(path, old)) % ROOT_MOD
            if old.kind == "f":
                self.digests[old.ref] -= 1
                self.unheld += self.digests[old.ref] == 0
        if entry is not None:
            self.dirs += entry.kind == "d"
            self.entries[path] = entry
            self.root = (self.root + contribution(path, entry)) % ROOT_MOD
            if entry.kind == "f":
                self.unheld -= self.digests.get(entry.ref) == 0
                self.digests[entry.ref] += 1
        if self.unheld > 64 and self.unheld * 4 > len(self.digests):
            self.digests = Counter({d: n for d, n in self.digests.items() if n > 0})
            self.unheld = 0

    @classmethod
    def from_wire(cls, entries: dict[str, list[object]]) -> Manifest:
        m = cls()
        for path, (kind, mode, ref) in entries.items():
            m.put(path, Entry(str(kind), int(str(mode)), str(ref)))
        return m


def diff(old: Manifest, new: Manifest, paths: set[str] | None = None) -> dict[str, Entry | None]:
    """Changed entries of ``new`` against ``old`` (None: removed), optionally only ``paths``."""
    if paths is None:
        paths = set(old.entries) | set(new.entries)
    out: dict[str, Entry | None] = {}
    for path in paths:
        entry = new.entries.get(path)
        if entry is None:
            if path in old.entries:
                out[path] = None
        elif not entry.same(old.entries.get(path)):
            out[path] = entry
    return out


class WorkspaceVanished(InvalidRequest):
    """The workspace root disappeared (or was replaced) while it was being scanned."""

    def __init__(self, root: Path) -> None:
        super().__init__(
            f"workspace {root} vanished during the scan; nothing was published to the pods",
            "recreate the folder (or pass --path DIR) and run neo sync again",
        )


def root_ident(root: Path) -> Ident:
    """Which directory the workspace root is now (a root given as a symlink is followed)."""
    try:
        st = os.stat(root)
    except OSError:
        raise WorkspaceVanished(root) from None
    if not stat.S_ISDIR(st.st_mode):
        raise WorkspaceVanished(root)
    return files.ident(st)


def hash_file(path: str, expected: Ident | None = None) -> tuple[str, int]:
    """SHA-256 (hardware-accelerated where available, faster than blake2b) and byte count.

    Opened as the scan saw it (``expected``; see :mod:`jupyter_neo.sync.files`): a path swapped
    for a symlink or a FIFO raises :class:`Swapped` instead of being followed or blocking.
    """
    h = hashlib.sha256()
    n = 0
    with os.fdopen(files.open_file(path, expected), "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


@dataclass
class _Pass:
    """The bookkeeping of one scan: what was skipped, how many files were hashed, what changed."""

    skipped: dict[str, str]
    now_ns: int
    touched: set[str] = field(default_factory=set)
    hashed: int = 0
    idents: dict[str, Ident] = field(default_factory=dict)


@dataclass
class ScanResult:
    manifest: Manifest
    changes: dict[str, Entry | None]
    skipped: dict[str, str]  # path -> why it is not synced (refused, unreadable)
    hashed: int = 0
    seconds: float = 0.0
    idents: dict[str, Ident] = field(default_factory=dict)  # file -> the inode the scan read

    def ident_of(self, path: str, entry: Entry) -> Ident | None:
        """The inode a file's content must come from: as scanned now, or as cached earlier."""
        return self.idents.get(path) or (entry.key[:2] if entry.key else None)


class Scanner:
    """The controller's view of one workspace root; :meth:`scan` never mutates it."""

    def __init__(self, root: Path, max_file_size: int, cache_path: Path | None = None) -> None:
        self.root = root
        self.rules = IgnoreRules(root)
        self.max_file_size = max_file_size
        self.cache_path = cache_path
        self.manifest = Manifest()
        self.skipped: dict[str, str] = {}
        self.acked: dict[str, list[object]] = {}  # "reservation/pod" -> [generation, root]
        if cache_path is not None:
            self._load(cache_path)

    # ------------------------------------------------------------------ cache file
    def _load(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_text())
            if doc.get("version") != CACHE_VERSION or doc.get("root") != str(self.root):
                return
            for rel, (kind, mode, ref, size, key) in doc["entries"].items():
                self.manifest.put(rel, Entry(kind, mode, ref, size, tuple(key) if key else None))
            self.acked = dict(doc.get("acked", {}))
        except (OSError, ValueError, KeyError, TypeError):
            self.manifest = Manifest()  # a bad cache only costs a re-hash

    def save(self) -> None:
        if self.cache_path is None:
            return
        doc = {
            "version": CACHE_VERSION,
            "root": str(self.root),
            "entries": {p: [e.kind, e.mode, e.ref, e.size, e.key] for p, e in self.manifest.entries.items()},
            "acked": self.acked,
        }
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(doc))
            tmp.replace(self.cache_path)
        except BaseException:  # a full disk: leave no partial file (the caller warns)
            tmp.unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------------ scanning
    def scan(self, hints: set[str] | None = None) -> ScanResult:
        """A new manifest: everything (``hints`` None) or only the hinted paths re-examined."""
        t0 = time.perf_counter()
        top = root_ident(self.root)
        if hints is not None and not hints:  # a tracker saw nothing: O(1), not a manifest copy
            return ScanResult(self.manifest, {}, dict(self.skipped), 0, time.perf_counter() - t0)
        new = self.manifest.copy()
        if hints is None or any(IgnoreRules.is_rule_file(h) for h in hints):
            self.rules.invalidate()
            hints = None
        if hints is None:
            ctx = _Pass({}, time.time_ns())
            seen: dict[str, Entry] = {}
            self._walk("", seen, ctx, top)
            for path in [p for p in new.entries if p not in seen]:
                new.put(path, None)
            for path, entry in seen.items():
                if entry != new.entries.get(path):
                    new.put(path, entry)
            changes = diff(self.manifest, new)
        else:
            ctx = _Pass(dict(self.skipped), time.time_ns())
            for rel in sorted(hints):
                self._rescan_path(rel, new, ctx)
            changes = diff(self.manifest, new, ctx.touched)
        if root_ident(self.root) != top:  # deleted or replaced while we walked: a partial view
            raise WorkspaceVanished(self.root)
        return ScanResult(new, changes, ctx.skipped, ctx.hashed, time.perf_counter() - t0, ctx.idents)

    def commit(self, result: ScanResult) -> None:
        self.manifest = result.manifest
        self.skipped = result.skipped

    def _rescan_path(self, rel: str, new: Manifest, ctx: _Pass) -> None:
        """Re-examine one reported path (and below it, if it is or was a directory)."""
        old = new.entries.get(rel)
        gone = [rel] if old is not None else []
        if old is not None and old.kind == "d":
            gone += [p for p in new.entries if p.startswith(rel + "/")]
        # A file or link (the edit) is overwritten in place if it is still there (Manifest.put
        # says why); everything else goes now and comes back below if it is still there.
        kept = old if old is not None and old.kind != "d" else None
        for path in gone:
            if kept is None or path != rel:
                new.put(path, None)
        ctx.touched.update(gone)
        try:
            self._examine(rel, new, ctx)
        finally:
            if kept is not None and new.entries.get(rel) is kept:
                new.put(rel, None)  # gone, ignored or unreadable now

    def _examine(self, rel: str, new: Manifest, ctx: _Pass) -> None:
        """Put what is at ``rel`` now (and below it, for a directory) into ``new``."""
        for path in [p for p in ctx.skipped if p == rel or p.startswith(rel + "/")]:
            del ctx.skipped[path]
        parent = rel.rpartition("/")[0]
        if parent and new.entries.get(parent, Entry("", 0, "")).kind != "d":
            # Its directory is unknown (new, or ignored): examine the highest unknown ancestor.
            return self._rescan_path(parent, new, ctx)
        try:
            st = files.lstat_beneath(str(self.root), rel)
        except OSError:
            return  # gone, or below a directory that is now a link: nothing to sync there
        is_dir = stat.S_ISDIR(st.st_mode)
        if self.rules.reason_with_parents(rel, is_dir) is not None:
            return
        entry = self._entry(rel, st, ctx)
        if entry is None:
            return
        new.put(rel, entry)
        ctx.touched.add(rel)
        if is_dir:
            seen: dict[str, Entry] = {}
            self._walk(rel, seen, ctx, files.ident(st))
            for path, e in seen.items():
                new.put(path, e)
            ctx.touched.update(seen)

    def _walk(self, top: str, seen: dict[str, Entry], ctx: _Pass, top_ident: Ident) -> None:
        """Walk below ``top``, opening each directory as the inode its parent's listing showed."""
        stack = [(top, top_ident)]
        while stack:
            rel_dir, expected = stack.pop()
            try:
                fd = files.open_dir(os.path.join(self.root, rel_dir), expected, follow=not rel_dir)
                try:
                    items = files.list_dir(fd)
                finally:
                    os.close(fd)
            except Swapped as exc:
                ctx.skipped[rel_dir or "."] = f"{exc.reason}; the next sync takes its new state"
                continue
            except (FileNotFoundError, NotADirectoryError):
                continue  # vanished while walking (the root is checked after the walk)
            except OSError as exc:
                ctx.skipped[rel_dir or "."] = f"cannot read directory: {exc.strerror}"
                continue
            for name, st in items:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                is_dir = stat.S_ISDIR(st.st_mode)
                if self.rules.reason(rel, is_dir) is not None:
                    continue
                entry = self._entry(rel, st, ctx)
                if entry is None:
                    continue
                seen[rel] = entry
                if is_dir:
                    stack.append((rel, files.ident(st)))

    def _entry(self, rel: str, st: os.stat_result, ctx: _Pass) -> Entry | None:
        """The entry for one path, from the stat cache when its fingerprint is unchanged."""
        full = os.path.join(self.root, rel)
        if stat.S_ISDIR(st.st_mode):
            return Entry("d", 0, "")
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(full)
            except OSError:
                return None
            if link_escapes(rel, target) or not _resolves_inside(self.root, full):
                ctx.skipped[rel] = (
                    f"symlink points outside the workspace ({target}); "
                    "copy the target in, or use a volume for shared data"
                )
                return None
            return Entry("l", 0, target)
        if not stat.S_ISREG(st.st_mode):
            ctx.skipped[rel] = "not a regular file, directory or symlink"
            return None
        mode = st.st_mode & 0o7777
        if st.st_size > self.max_file_size:
            ctx.skipped[rel] = (
                f"file is {st.st_size / 2**20:.1f} MiB, over the sync limit of "
                f"{self.max_file_size / 2**20:.0f} MiB; put large data on a volume or object "
                "storage and read it from there (or raise NEO_SYNC_MAX_FILE_MB, or list it in .neoignore)"
            )
            return None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        ctx.idents[rel] = files.ident(st)
        cached = self.manifest.entries.get(rel)
        if cached is not None and cached.key == key and cached.kind == "f":
            return cached._replace(mode=mode)
        try:
            digest, size = hash_file(full, files.ident(st))
        except Swapped as exc:
            ctx.skipped[rel] = f"{exc.reason}; not synced (the next sync takes its new state)"
            return None
        except PermissionError:
            ctx.skipped[rel] = (
                "permission denied (not readable by you); fix with chmod or list it in .neoignore"
            )
            return None
        except OSError:
            return None  # vanished between stat and read: the next scan sees its new state
        ctx.hashed += 1
        racy = ctx.now_ns - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS
        return Entry("f", mode, digest, size, None if racy else key)


def _resolves_inside(root: Path, link: str) -> bool:
    """A symlink whose target resolves (through other links) outside the root is refused."""
    real_root = os.path.realpath(root)
    with contextlib.suppress(OSError):
        real = os.path.realpath(link)
        return real == real_root or real.startswith(real_root + os.sep)
    return False
