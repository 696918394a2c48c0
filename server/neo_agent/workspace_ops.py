"""Pod side of workspace sync: a content store, whole-tree generations and one atomic flip.

Layout under the pod's workspace (the controller never names these paths, only workspace-relative
entries)::

    objects/<sha256>.<mode>   immutable content, one inode per (digest, mode bits)
    gens/<G>/                 generation G: directories plus hard links into objects/
    current -> gens/<G>       flipped with one rename(2); readers see whole generations only
    meta/<G>.json             the manifest of generation G (written in the background)
    tmp/                      spare trees being prepared, never visible as ``current``

Why a spare tree: materialising a generation costs one link(2) per file, which is O(tree), but
a sync should cost O(change). So after each flip the agent prepares, in a background thread, a
private copy of the new generation (the *spare*); the next delta is applied to that spare
(O(change)), the spare is renamed to ``gens/<G+1>`` and ``current`` flips. If the connection
drops mid-sync nothing partial ever becomes current: the spare is discarded.

Preparing the spare is O(change) too: the generation that falls out of the rollback window
(``gens/<G-KEEP_PREVIOUS-1>``, no process's cwd) is not deleted but renamed into the spare, and
the deltas of the generations after it (kept in memory) are applied to it. Only when that chain
is broken (the first syncs, a full rebuild, an agent restart, a generation in use) is the spare
cloned from the manifest, O(tree). Nor is a generation recycled that a process may have written
into (a run's outputs, ``__pycache__``, a directory swapped for a symlink): its files would
reappear in later generations, stale bytecode could pass Python's mtime-and-size check, and the
agent's link(2) could follow a planted symlink. Whether a generation was *exposed* (a process
this agent launched ran while it was current) is known exactly; an exposed generation is
recycled only if no directory of it changed after it became current (its ctime, which no
process can set, against the generation's root right after the flip; one lstat per directory),
else the spare is cloned. A process the agent did not launch (``kubectl exec`` into a pod) is
not tracked: its writes into ``current`` can still outlive their generation.

The manifest snapshot ``meta/<G>.json`` is also O(tree), so it is written once syncs pause (with
object collection), not per flip; a pod restarted before that reports an unknown manifest and is
repaired by the next sync.

The manifest's root digest is an additive multiset hash (the sum of SHA-256 of every entry,
modulo 2**256), so both sides update it in O(change) and compare whole trees in one round trip.
The controller imports :func:`entry_hash`, :func:`check_path` and :func:`link_escapes` from this
module so the two sides cannot drift. Stdlib only, Python 3.8 syntax: the agent runs in any image.
"""

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import zlib
from typing import Any, Dict, List, Optional, Set, Tuple

from neo_agent import reaper, validate

ROOT_MOD = 1 << 256
EMPTY_ROOT = "0" * 64
KEEP_PREVIOUS = 2  # generations kept for rollback besides the current one
GC_IDLE_S = 2.0  # collect unreferenced objects after this long without a sync
PART_MAX = 64 * 1024 * 1024  # largest chunk of one streamed object (ws_object_part, relay)
OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)

# (kind, mode, ref): kind "f" (ref = sha256), "l" (ref = target), "d" (ref = ""). A tuple of
# strings and ints, which CPython's collector stops tracking after its first pass: a manifest of
# 12k lists would make every full collection walk them all (~2.5 ms, inside some sync's latency).
Entry = Tuple[str, int, str]
INLINE_OPS = 16  # deltas up to this size (without directory removals) apply on the agent's loop


class SyncRefused(Exception):
    """A sync request that must be refused as a whole (bad path, escaping link, root mismatch)."""

    code = "sync_refused"


class NoSpace(SyncRefused):
    """The pod's workspace filesystem is full; what this sync stored has been removed again."""

    code = "no_space"


def entry_hash(path: str, kind: str, mode: int, ref: str) -> int:
    """The contribution of one manifest entry to the root digest."""
    line = "%s\0%s\0%o\0%s" % (kind, path, mode, ref)
    return int.from_bytes(hashlib.sha256(line.encode("utf-8", "surrogateescape")).digest(), "big")


def root_hex(root: int) -> str:
    return "%064x" % (root % ROOT_MOD)


def check_path(path: Any) -> str:
    """A relative, normalised, non-empty path with no ``..``; raise SyncRefused otherwise."""
    if not isinstance(path, str) or not path or "\x00" in path or path.startswith("/"):
        raise SyncRefused("bad path %r" % (path,))
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise SyncRefused("path %r is not a normalised workspace path" % (path,))
    return path


def link_escapes(path: str, target: str) -> bool:
    """True when symlink ``path -> target`` would point outside the workspace (lexically)."""
    if not target or target.startswith("/") or "\x00" in target:
        return True
    depth = len(path.split("/")) - 1  # directories above the link, inside the workspace
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def moves_links(deletes: List[Tuple[str, Entry]], sets: List[Tuple[str, Entry]]) -> bool:
    """Whether a delta can change where some symlink of the tree resolves.

    Resolving a link walks directories and links only; a regular file is never walked through.
    So a delta that adds, changes or removes regular files only (the common edit) leaves every
    link resolving where it did in the checked previous generation, and the O(links) check that
    needs a realpath(3) per link can be skipped.
    """
    return any(entry[0] != "f" for _, entry in deletes) or any(entry[0] != "f" for _, entry in sets)


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


class Workspace:
    """The sync state of one pod: current generation, its manifest and the content store."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.lock = asyncio.Lock()
        self.loaded = False
        self.gen = 0
        self.entries: Optional[Dict[str, Entry]] = None  # None: manifest unknown (needs repair)
        self.root = 0
        self.objects: Dict[str, Set[int]] = {}
        self.spare: Optional[Tuple[int, str, "asyncio.Future[Any]"]] = None
        self.gc_handle: Optional[asyncio.Handle] = None
        self.seq = 0
        # generation -> the delta (removals, additions) that made it from the one before
        self.deltas: Dict[int, Tuple[List[Tuple[str, Entry]], List[Tuple[str, Entry]]]] = {}
        self.meta_written = -1
        self.recycled = 0  # spares made from an old generation (O(change)); tests and benchmarks
        self.cloned = 0  # spares cloned from the manifest (O(tree))
        self.written = 0  # of the cloned: an old generation was there but a process had written in it
        # generation -> ctime (ns) of its root right after it became current: the agent's last
        # change to it; a directory of it changed later was changed by some process
        self.sealed: Dict[int, int] = {}
        self.exposed: Set[int] = set()  # generations some process of this agent ran under
        self.launches_seen = 0  # the agent's launch count when the current generation flipped in
        # Streamed objects being received: (digest, mode) -> [temp path, file, sha256, received, total]
        self.parts: Dict[Tuple[str, int], List[Any]] = {}

    # ------------------------------------------------------------------ paths and loading
    def p(self, *parts: str) -> str:
        return os.path.join(self.agent.workspace, *parts)

    def obj(self, digest: str, mode: int) -> str:
        return self.p("objects", "%s.%o" % (digest, mode))

    def load(self) -> None:
        if self.loaded:
            return
        if not self.agent.workspace:
            raise SyncRefused("the agent has no workspace (not claimed)")
        for sub in ("objects", "gens", "meta", "tmp"):
            os.makedirs(self.p(sub), exist_ok=True)
        shutil.rmtree(self.p("tmp"), ignore_errors=True)  # spares of an earlier agent
        os.makedirs(self.p("tmp"), exist_ok=True)
        for name in os.listdir(self.p("objects")):
            digest, _, mode = name.partition(".")
            if len(digest) == 64 and mode:
                self.objects.setdefault(digest, set()).add(int(mode, 8))
        try:
            self.gen = int(os.path.basename(os.readlink(self.p("current"))))
        except (OSError, ValueError):
            self.gen = 0
        with contextlib.suppress(OSError):
            if os.listdir(self.p("current")):  # an earlier agent's tree: its processes may have written in it
                self.exposed.add(self.gen)  # and it was never sealed here, so it is cloned around
        self.entries, self.root = None, 0
        try:
            with open(self.p("meta", "%d.json" % self.gen)) as f:
                doc = json.load(f)
            self.entries = {path: tuple(entry) for path, entry in doc["entries"].items()}
            self.root = int(doc["root"], 16)
            self.meta_written = self.gen
        except (OSError, ValueError, KeyError):
            if self.gen == 0 and not os.listdir(self.p("gens", "0")):
                self.entries = {}
        self.loaded = True

    def state(self) -> Dict[str, Any]:
        return {
            "generation": self.gen,
            "root": root_hex(self.root) if self.entries is not None else None,
        }

    # ------------------------------------------------------------------ operations
    async def op_state(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        async with self.lock:
            self.load()
            spare = self.spare
            if h.get("settle") and spare is not None:  # benchmarks: let background work finish
                with contextlib.suppress(Exception):
                    await spare[2]
            spares = {"recycled": self.recycled, "cloned": self.cloned, "written": self.written}
            return dict(self.state(), spares=spares)

    async def op_manifest(self, h: Dict[str, Any], p: bytes, emit: Any) -> Any:
        """The current manifest and the digests held, for a controller that lost track (repair)."""
        async with self.lock:
            self.load()
            doc = dict(self.state(), entries=self.entries, objects=sorted(self.objects))
            return {"encoding": "zlib+json"}, zlib.compress(json.dumps(doc).encode("ascii"), 1)

    async def op_objects(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """Store content ahead of a ``ws_sync`` when it does not fit in one frame."""
        blobs = validate.blobs(h, "blobs", len(p))
        async with self.lock:
            self.load()
            await self._guarded(
                asyncio.get_event_loop().run_in_executor(None, self._store_blobs, blobs, p, 0)
            )
            return {"stored": len(blobs)}

    async def op_object_part(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """One chunk of an object too large for one frame: streamed, so memory stays bounded."""
        digest = validate.digest(h.get("digest"))
        mode = validate.mode(h.get("mode"))
        total = validate.integer(h, "total")
        offset = validate.integer(h, "offset", 0, 0, total)
        data = zlib.decompress(p) if validate.boolean(h, "compressed") else p
        async with self.lock:
            self.load()
            done = await self._guarded(
                asyncio.get_event_loop().run_in_executor(
                    None, self.receive_part, digest, mode, offset, total, data
                )
            )
            return {"received": offset + len(data), "stored": done}

    async def _guarded(self, work: "asyncio.Future[Any]") -> Any:
        """Run a storing step; on failure remove what this sync stored, and name a full disk plainly.

        A sync that fails half way must not leave unreferenced content behind: on a full disk
        those objects would keep the next sync (after the user freed space) from ever fitting.
        """
        try:
            return await work
        except BaseException as exc:
            await asyncio.get_event_loop().run_in_executor(None, self._forget_unreferenced)
            if isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE:
                raise NoSpace(self._no_space_message()) from None
            raise

    def _no_space_message(self) -> str:
        try:
            st = os.statvfs(self.agent.workspace)
            free = "%.1f MiB free of %.1f MiB" % (
                st.f_bavail * st.f_frsize / 2**20,
                st.f_blocks * st.f_frsize / 2**20,
            )
        except OSError:
            free = "free space unknown"
        return (
            "no space left on the pod's workspace disk (%s, %s); this sync's content was removed "
            "again: free space in the pod or sync less (.neoignore), then run neo sync again"
            % (self.agent.workspace, free)
        )

    def _forget_unreferenced(self) -> None:
        """Drop partial uploads and every object no generation links to (link count 1)."""
        for path, f, _, _, _ in self.parts.values():
            with contextlib.suppress(OSError):
                f.close()
                os.unlink(path)
        self.parts.clear()
        self._collect_unreferenced()

    def receive_part(self, digest: str, mode: int, offset: int, total: int, data: bytes) -> bool:
        """Append one chunk of object (digest, mode); verify and store it when complete."""
        key = (digest, mode)
        part = self.parts.get(key)
        if offset == 0:
            if part is not None:
                with contextlib.suppress(OSError):
                    part[1].close()
                    os.unlink(part[0])
            path = self.p("tmp", "part-%d" % self._next())
            part = [path, open(path, "wb"), hashlib.sha256(), 0, total]  # noqa: SIM115 (open across chunks)
            self.parts[key] = part
        elif part is None or part[3] != offset or part[4] != total:
            raise SyncRefused("chunk of %s at offset %d arrived out of order" % (digest, offset))
        if len(data) > PART_MAX or part[3] + len(data) > total:
            raise SyncRefused("chunk of %s is larger than announced" % digest)
        part[1].write(data)
        part[2].update(data)
        part[3] += len(data)
        if part[3] < total:
            return False
        del self.parts[key]
        part[1].close()
        if part[2].hexdigest() != digest:
            os.unlink(part[0])
            raise SyncRefused("content for %s arrived corrupted (changed while it was sent?)" % digest)
        os.chmod(part[0], mode)
        os.rename(part[0], self.obj(digest, mode))
        self.objects.setdefault(digest, set()).add(mode)
        return True

    async def op_sync(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        # Shielded: a dropped connection cancels the handler, but an apply already under way runs
        # to its end (or discards its spare) while holding the lock, so syncs never interleave.
        ops_len = validate.integer(h, "ops_len", 0, 0, len(p))
        checked = (
            validate.boolean(h, "full"),
            ops_len,
            validate.digest(h.get("root"), "root"),
            validate.integer(h, "generation", 0),
            validate.blobs(h, "blobs", len(p), ops_len),
        )
        return await asyncio.shield(self._sync(dict(h, _checked=checked), p))

    async def _sync(self, h: Dict[str, Any], p: bytes) -> Dict[str, Any]:
        async with self.lock:
            try:
                reply: Dict[str, Any] = await self._guarded(asyncio.ensure_future(self._sync_locked(h, p)))
                return reply
            except SyncRefused as exc:
                from neo_agent.agent import RequestError

                raise RequestError(str(exc), exc.code) from None

    async def _sync_locked(self, h: Dict[str, Any], p: bytes) -> Dict[str, Any]:
        self.load()
        loop = asyncio.get_event_loop()
        full, ops_len, want_root, generation, blobs = h["_checked"]
        if self.entries is not None and root_hex(self.root) == want_root:
            return dict(self.state(), status="noop")
        if not full and (self.entries is None or root_hex(self.root) != h.get("base")):
            return dict(self.state(), status="mismatch")
        try:
            ops = json.loads(p[:ops_len].decode("ascii")) if ops_len else []
        except ValueError:
            raise SyncRefused("the delta is not JSON") from None
        if not isinstance(ops, list) or not all(isinstance(op, list) and op for op in ops):
            raise SyncRefused("the delta must be a list of entries")
        if sum(int(b[1]) for b in blobs) > (1 << 20):
            await loop.run_in_executor(None, self._store_blobs, blobs, p, ops_len)
        else:
            self._store_blobs(blobs, p, ops_len)
        entries: Dict[str, Entry] = {} if full else dict(self.entries or {})
        root = 0 if full else self.root
        root, deletes, sets = self._apply_ops(entries, root, ops)
        if root_hex(root) != want_root:
            raise SyncRefused("root digest after applying the delta does not match (%s)" % root_hex(root))
        missing = sorted({e[2] for _, e in sets if e[0] == "f" and e[2] not in self.objects})
        if missing:
            return dict(self.state(), status="missing", digests=missing)
        if full:
            tree = self.p("tmp", "build-%d" % self._next())
            os.mkdir(tree, 0o755)
            deletes = []
        else:
            tree = await self._take_spare()
        try:
            if not full and self._small_delta(deletes, sets):
                self._materialise(tree, deletes, sets)
            else:
                await loop.run_in_executor(None, self._materialise, tree, deletes, sets)
            if full or moves_links(deletes, sets):
                await loop.run_in_executor(None, self._check_links, tree, entries)
        except BaseException:
            await loop.run_in_executor(None, shutil.rmtree, tree, True)
            raise
        gen = max(generation, self.gen + 1)
        final = self.p("gens", str(gen))
        if os.path.lexists(final):
            shutil.rmtree(final, ignore_errors=True)
        os.rename(tree, final)
        self.sealed[gen] = os.lstat(final).st_ctime_ns
        link = self.p("tmp", "current-%d" % self._next())
        os.symlink(os.path.join("gens", str(gen)), link)
        os.replace(link, self.p("current"))  # the one atomic step readers can observe
        self._note_exposure(gen)
        self.gen, self.entries, self.root = gen, entries, root
        self._after_flip(gen, entries, root, None if full else (deletes, sets))
        return dict(self.state(), status="applied")

    # ------------------------------------------------------------------ steps
    def _note_exposure(self, gen: int) -> None:
        """Remember which generations a process of this agent may have written into.

        The one that was current is exposed if a process was launched while it was; the new one
        is exposed if a process is alive as it becomes current (its writes through ``current``
        now land there). A process launched later marks it at the next flip.
        """
        launches = int(getattr(self.agent, "seq", 0))
        if launches != self.launches_seen:
            self.exposed.add(self.gen)
            self.launches_seen = launches
        if self._live_launched():
            self.exposed.add(gen)

    def _live_launched(self) -> List[int]:
        """The processes this agent launched that still run (no I/O: safe on the loop)."""
        return [p.pid for p in list(getattr(self.agent, "procs", {}).values()) if p.returncode is None]

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _store_blobs(self, blobs: List[Any], p: bytes, offset: int) -> None:
        """Write each content blob once into the store, after checking its digest."""
        for digest, length, compressed, wire_mode in blobs:
            data = p[offset : offset + int(length)]
            offset += int(length)
            if compressed:
                try:
                    data = zlib.decompress(data)
                except zlib.error:
                    raise SyncRefused("content for %s arrived corrupted" % digest) from None
            if hashlib.sha256(data).hexdigest() != digest:
                raise SyncRefused("content for %s arrived corrupted" % digest)
            mode = int(wire_mode) & 0o7777
            if mode in self.objects.get(digest, ()):
                continue
            tmp = self.p("tmp", "obj-%d" % self._next())
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.chmod(tmp, mode)
                os.rename(tmp, self.obj(digest, mode))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self.objects.setdefault(digest, set()).add(mode)

    def _apply_ops(
        self, entries: Dict[str, Entry], root: int, ops: List[Any]
    ) -> Tuple[int, List[Tuple[str, Entry]], List[Tuple[str, Entry]]]:
        """Apply a delta to a manifest copy; return the new root, removals and additions."""
        deletes: List[Tuple[str, Entry]] = []
        sets: List[Tuple[str, Entry]] = []
        for op in ops:
            if len(op) not in (1, 4):
                raise SyncRefused("a delta entry must be [path] or [path, kind, mode, ref]")
            path = check_path(op[0])
            old = entries.get(path)
            if old is not None and len(op) > 1 and old[0] == "d" and op[1] == "d":
                continue  # directories carry no mode: nothing to do, and never rmtree them
            if old is not None:
                root -= entry_hash(path, old[0], old[1], old[2])
                deletes.append((path, old))
            if len(op) == 1:
                entries.pop(path, None)
                continue
            # A changed entry is overwritten in place below, not popped and re-added: a dict
            # without deleted slots is copied by the next sync as one block (~10x faster at 12k
            # entries), and that copy is the only O(tree) step left in a one-file edit.
            kind, ref = op[1], op[3]
            try:
                mode = validate.mode(op[2])
            except validate.FieldError:
                raise SyncRefused("bad mode for %r" % path) from None
            if (
                kind not in ("f", "l", "d")
                or not isinstance(ref, str)
                or (kind == "f" and not validate.HEX64_RE.match(ref))
            ):
                raise SyncRefused("bad entry for %r" % path)
            if kind == "l" and link_escapes(path, ref):
                raise SyncRefused("symlink %r -> %r points outside the workspace" % (path, ref))
            entries[path] = (kind, mode, ref)
            root += entry_hash(path, kind, mode, ref)
            sets.append((path, entries[path]))
        # Structure: every entry hangs below a directory entry, so nothing is ever written
        # through a symlink (which could lead outside the workspace).
        for path, _ in sets:
            parent = _parent(path)
            if parent and entries.get(parent, ("", 0, ""))[0] != "d":
                raise SyncRefused("%r has no parent directory in the manifest" % path)
        gone = [path + "/" for path, old in deletes if old[0] == "d" and path not in entries]
        if gone and any(key.startswith(tuple(gone)) for key in entries):
            raise SyncRefused("a removed directory still has entries")
        return root % ROOT_MOD, deletes, sets

    def _materialise(
        self, tree: str, deletes: List[Tuple[str, Entry]], sets: List[Tuple[str, Entry]]
    ) -> None:
        """Turn a tree holding the old generation into the new one (runs in a thread)."""
        for path, old in sorted(deletes, key=lambda item: item[0], reverse=True):
            full = os.path.join(tree, path)
            if old[0] == "d":
                shutil.rmtree(full, ignore_errors=True)
            elif os.path.lexists(full):
                os.unlink(full)
        for path, entry in sorted(sets, key=lambda item: item[0]):
            self._place(tree, path, entry)

    def _small_delta(self, deletes: List[Tuple[str, Entry]], sets: List[Tuple[str, Entry]]) -> bool:
        """Whether applying a delta is a few link/unlink/mkdir calls, done on the loop directly.

        A hop to a worker thread and back costs more than the typical edit's one link(2) when
        four agents share two cores; but a directory removal (rmtree) or an object that must
        first be copied to a new mode can take long, and goes to a thread.
        """
        if len(deletes) + len(sets) > INLINE_OPS or any(old[0] == "d" for _, old in deletes):
            return False
        return all(e[0] != "f" or e[1] in self.objects.get(e[2], ()) for _, e in sets)

    def _check_links(self, tree: str, entries: Dict[str, Entry]) -> None:
        """Refuse a tree in which some symlink resolves, through the real filesystem, outside it.

        Each link's text passes :func:`link_escapes`, but a chain can still lead out
        (``x/l1 -> ..``, ``l2 -> x/l1/../../etc/hostname``); so resolve every link of the new
        tree as the kernel would. Cost: one realpath per symlink, and trees hold few.
        """
        real_tree = os.path.realpath(tree)
        for path, entry in entries.items():
            if entry[0] == "l":
                real = os.path.realpath(os.path.join(tree, path))
                if real != real_tree and not real.startswith(real_tree + os.sep):
                    raise SyncRefused("symlink %r resolves outside the workspace" % path)

    def _place(self, tree: str, path: str, entry: Entry) -> None:
        full = os.path.join(tree, path)
        kind, mode, ref = entry
        if kind == "d":
            if not os.path.isdir(full):
                os.mkdir(full, 0o755)
        elif kind == "l":
            os.symlink(ref, full)
        else:
            src = self._object_with_mode(ref, mode)
            try:
                os.link(src, full)
            except OSError as exc:
                if exc.errno not in (errno.EMLINK, errno.EXDEV):
                    raise
                shutil.copyfile(src, full)  # too many links to one inode: a private copy
                os.chmod(full, mode)

    def _object_with_mode(self, digest: str, mode: int) -> str:
        """The object for (digest, mode), copied locally from another mode if needed: no transfer."""
        path = self.obj(digest, mode)
        modes = self.objects.get(digest, set())
        if mode not in modes:
            tmp = self.p("tmp", "obj-%d" % self._next())
            try:
                shutil.copyfile(self.obj(digest, next(iter(modes))), tmp)
                os.chmod(tmp, mode)
                os.rename(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            modes.add(mode)
        return path

    def _clone(self, entries: Dict[str, Entry], tree: str) -> None:
        os.mkdir(tree, 0o755)
        for path in sorted(entries):
            self._place(tree, path, entries[path])

    async def _take_spare(self) -> str:
        """A private clone of the current generation, built in the background when possible."""
        spare, self.spare = self.spare, None
        if spare is not None and spare[0] == self.gen:
            try:
                await spare[2]
                return spare[1]
            except Exception:
                shutil.rmtree(spare[1], ignore_errors=True)
        elif spare is not None:
            self.agent._spawn(self._discard(spare))
        tree = self.p("tmp", "spare-%d" % self._next())
        await asyncio.get_event_loop().run_in_executor(None, self._clone, dict(self.entries or {}), tree)
        return tree

    async def _discard(self, spare: Tuple[int, str, "asyncio.Future[Any]"]) -> None:
        with contextlib.suppress(Exception):
            await spare[2]
        await asyncio.get_event_loop().run_in_executor(None, shutil.rmtree, spare[1], True)

    def _after_flip(
        self,
        gen: int,
        entries: Dict[str, Entry],
        root: int,
        delta: Optional[Tuple[List[Tuple[str, Entry]], List[Tuple[str, Entry]]]],
    ) -> None:
        """Background work after a flip: the next spare, old generations; later, meta and GC.

        ``entries`` is never mutated after the flip (the next sync copies it), so the worker
        thread may read it without a copy.
        """
        loop = asyncio.get_event_loop()
        if delta is None:
            self.deltas.clear()  # a full build: the chain of deltas restarts here
        else:
            self.deltas[gen] = delta
        oldest = gen - KEEP_PREVIOUS - 1
        for old in [g for g in self.deltas if g <= oldest]:
            del self.deltas[old]
        for old in [g for g in self.sealed if g < oldest]:
            del self.sealed[old]
        self.exposed = {g for g in self.exposed if g >= oldest}
        chain = [self.deltas.get(g) for g in range(oldest + 1, gen + 1)]
        launched = self._live_launched()
        tree = self.p("tmp", "spare-%d" % self._next())
        exposed, seal = oldest in self.exposed, self.sealed.get(oldest)

        def work() -> None:
            protected = self._generations_in_use(launched)  # /proc reads: off the loop
            recycle = (
                self.p("gens", str(oldest))
                if oldest >= 0
                and all(chain)
                and str(oldest) not in protected
                and os.path.isdir(self.p("gens", str(oldest)))
                else None
            )
            if recycle is not None and exposed and not self._untouched(recycle, seal, entries, chain):
                self.written += 1
                recycle = None  # dropped with the other old generations below
            if recycle is not None:
                try:
                    os.rename(recycle, tree)
                    for step in chain:
                        assert step is not None
                        self._materialise(tree, step[0], step[1])
                    self.recycled += 1
                    recycled = True
                except OSError:
                    shutil.rmtree(tree, ignore_errors=True)
                    recycled = False
            else:
                recycled = False
            if not recycled:
                try:
                    self._clone(entries, tree)
                except BaseException:
                    shutil.rmtree(tree, ignore_errors=True)
                    raise
                self.cloned += 1
            self._drop_old_generations(gen, protected)

        self.spare = (gen, tree, loop.run_in_executor(None, work))
        if self.gc_handle is not None:
            self.gc_handle.cancel()
        self.gc_handle = loop.call_later(GC_IDLE_S, lambda: self.agent._spawn(self._gc_objects()))

    @staticmethod
    def _untouched(
        tree: str,
        seal: Optional[int],
        entries: Dict[str, Entry],
        chain: List[Any],
    ) -> bool:
        """Whether no directory of the old generation ``tree`` changed after it was sealed.

        Its directories are those of the newest manifest (``entries``) plus those the deltas since
        removed; one it never had is absent or not a directory here (skipped: a process creating or
        removing anything changes its parent's ctime). Files are not examined: a file's ctime is
        its object's, which every link(2) changes, and writing into one in place changes it for
        every generation anyway (docs/sync.md, caveats). Runs in the background thread.
        """
        if seal is None:
            return False
        dirs = [path for path, entry in entries.items() if entry[0] == "d"]
        dirs.extend(path for step in chain for path, old in step[0] if old[0] == "d")
        try:
            if os.lstat(tree).st_ctime_ns > seal:
                return False
            for path in dirs:
                try:
                    st = os.lstat(os.path.join(tree, path))
                except FileNotFoundError:
                    continue
                if st.st_ctime_ns > seal and stat.S_ISDIR(st.st_mode):
                    return False
        except OSError:
            return False
        return True

    def _write_meta(self) -> None:
        """The current manifest on disk, so a restarted agent knows its tree (runs when idle)."""
        gen, entries, root = self.gen, self.entries, self.root
        if entries is None or self.meta_written == gen:
            return
        tmp = self.p("meta", "%d.json.tmp" % gen)
        try:
            with open(tmp, "w") as f:
                json.dump({"entries": entries, "root": root_hex(root)}, f)
            os.replace(tmp, self.p("meta", "%d.json" % gen))
        except OSError:  # a full disk: the snapshot only speeds up a restart (repair covers it)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        self.meta_written = gen

    def _generations_in_use(self, launched: List[int]) -> Set[str]:
        """Generations that are the working directory of a running process (kept until it exits).

        The ``launched`` processes and their children: torchrun stays in the generation it
        started in, but a hot rank moves into each new one when it re-runs and then waits there.
        """
        used = set()
        for pid in set(launched).union(*(reaper.children(pid) for pid in launched)):
            try:
                cwd = os.readlink("/proc/%d/cwd" % pid)
            except OSError:
                continue
            rel = os.path.relpath(cwd, self.p("gens"))
            if not rel.startswith(".."):
                used.add(rel.split(os.sep)[0])
        return used

    def _drop_old_generations(self, gen: int, protected: Set[str]) -> None:
        for name in os.listdir(self.p("gens")):
            if name.isdigit() and int(name) < gen - KEEP_PREVIOUS and name not in protected:
                shutil.rmtree(self.p("gens", name), ignore_errors=True)
                try:
                    os.unlink(self.p("meta", "%s.json" % name))
                except OSError:
                    pass

    async def _gc_objects(self) -> None:
        """Delete objects no generation links to any more (link count 1), when syncs are idle."""
        if self.lock.locked():
            return
        async with self.lock:
            if self.spare is not None:
                try:
                    await self.spare[2]
                except Exception:
                    return

            def work() -> None:
                self._write_meta()
                self._collect_unreferenced()

            await asyncio.get_event_loop().run_in_executor(None, work)

    def _collect_unreferenced(self) -> None:
        """Delete every object no tree links to (link count 1); call with the lock held."""
        for digest, modes in list(self.objects.items()):
            for mode in list(modes):
                path = self.obj(digest, mode)
                try:
                    if os.stat(path).st_nlink == 1:
                        os.unlink(path)
                        modes.discard(mode)
                except OSError:
                    modes.discard(mode)
            if not modes:
                del self.objects[digest]


def answered(handler: Any) -> Any:
    """Wrap an operation so a refusal reaches the controller with its code (``no_space``, ...)."""

    async def op(h: Dict[str, Any], p: bytes, emit: Any) -> Any:
        try:
            return await handler(h, p, emit)
        except SyncRefused as exc:
            from neo_agent.agent import RequestError

            raise RequestError(str(exc), exc.code) from None

    return op


def register(agent: Any) -> None:
    """Called by :meth:`neo_agent.agent.Agent.extra_ops`: add the ``ws_*`` operations."""
    ws = Workspace(agent)
    agent.workspace_sync = ws
    agent.handlers["ws_state"] = answered(ws.op_state)
    agent.handlers["ws_manifest"] = answered(ws.op_manifest)
    agent.handlers["ws_objects"] = answered(ws.op_objects)
    agent.handlers["ws_object_part"] = answered(ws.op_object_part)
    agent.handlers["ws_sync"] = ws.op_sync
