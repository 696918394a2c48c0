"""Reconcile and transition: turn a scan into one ``ws_sync`` per pod, sent to all pods at once.

Stages (named as in Mutagen): *scan* (:mod:`jupyter_neo.sync.manifest`), *reconcile* (the delta
between the manifest the pods hold and the new one), *stage* (read the content of digests the
pods do not hold; renames and copies carry none), *transition* (each pod applies the delta to a
spare tree and flips ``current``, see :mod:`neo_agent.workspace_ops`).

The common case costs one round trip per pod: the request names the root the controller believes
the pod holds (``base``) and the root it must end at; the pod answers ``noop`` (already there),
``applied`` (with its new generation) or ``mismatch``. A mismatching pod (new, restarted, or cut
off during an earlier sync) is repaired: it sends its manifest and the digests it holds, and
gets exactly the difference. Fan-out is a star (every pod gets the same frame concurrently) on
one machine; with relay fan-out on, the frame goes to the root of a relay tree of pods
(:mod:`jupyter_neo.sync.tree`) and large content is pulled from the leader (docs/sync.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import time
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_neo.errors import AgentError, BackendError, InvalidRequest, NeoError
from jupyter_neo.sync import files, tree
from jupyter_neo.sync.files import Ident, Swapped
from jupyter_neo.sync.manifest import Entry, Manifest, Scanner, ScanResult, diff, hash_file, root_ident
from jupyter_neo.sync.report import Change, PodSync, SyncError, SyncReport
from jupyter_neo.sync.tracker import ChangeTracker

Transfer = Callable[[int, int], None]
"""(bytes of content moved so far, bytes planned) during one sync"""

if TYPE_CHECKING:
    from jupyter_neo.hosts import SyncHost
    from jupyter_neo.model import Pod, Reservation
    from jupyter_neo.transport.connection import AgentConnection

Progress = Callable[[str], None]
FRAME_LIMIT = 64 * 2**20  # content per frame; larger syncs send ws_objects frames first
PROGRESS_FRAME = 4 * 2**20
# Files from this size are streamed in chunks of this size (ws_object_part), never held whole:
# memory stays bounded whatever NEO_SYNC_MAX_FILE_MB allows (a 600 MB file once cost 1.9 GB RSS).
STREAM_CHUNK = 8 * 2**20
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _env_mb(name: str, default: float) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0 or value > 2**40:
        raise InvalidRequest(
            f"{name} must be a number of MiB (got {raw!r})", f"unset {name} or set e.g. {name}=64"
        )
    return int(value * 2**20)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 1:
        raise InvalidRequest(
            f"{name} must be a whole number of pods, 1 or more (got {raw!r})",
            f"unset {name} or set e.g. {name}=3",
        )
    return value


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, default)
    if raw not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)} (got {raw!r})", f"unset {name}")
    return raw


@dataclass
class SyncOptions:
    """Tunables; defaults come from the environment so every surface shares them."""

    max_file_size: int = field(default_factory=lambda: _env_mb("NEO_SYNC_MAX_FILE_MB", 64))
    compress: bool | None = None  # None: only when some pod is not on loopback
    frame_limit: int = FRAME_LIMIT
    # Relay fan-out (docs/sync.md): from this many pods and this much new content, the controller
    # uploads to the leader only and the other pods pull from it over the cluster network.
    # "auto": only when some pod is off the controller's loopback (measured: on one machine the
    # extra hop costs more than it saves); "on" / "off" force it.
    relay: str = field(default_factory=lambda: _env_choice("NEO_SYNC_RELAY", "auto", ("auto", "on", "off")))
    relay_min_pods: int = field(default_factory=lambda: _env_int("NEO_SYNC_RELAY_PODS", 3))
    relay_min_bytes: int = field(default_factory=lambda: _env_mb("NEO_SYNC_RELAY_MB", 8))
    # Children per pod in the relay tree that carries the sync frames (jupyter_neo.sync.tree).
    relay_fanout: int = field(default_factory=tree.fanout_from_env)


@dataclass
class _Blob:
    """Content for the pods: held in memory (``data``), or streamed from ``source`` when large."""

    digest: str
    mode: int
    data: bytes
    compressed: bool
    source: str | None = None  # a large file, read in chunks when sent
    ident: Ident | None = None  # the inode it must still be
    size: int = -1

    @property
    def length(self) -> int:
        """Bytes on the wire (after compression for in-memory blobs)."""
        return len(self.data) if self.source is None else self.size


@dataclass
class _Plan:
    """What one sync moves: from ``base`` to ``new`` by ``changes``, carrying ``blobs``."""

    base: Manifest
    new: Manifest
    changes: dict[str, Entry | None]
    blobs: dict[str, _Blob]
    generation: int = 0


def _why(old: Entry | None, new: Entry | None) -> str:
    if new is None:
        return "deleted"
    if old is None:
        return "added"
    if old.kind != new.kind:
        return "type changed"
    if old.ref != new.ref:
        return "retargeted" if new.kind == "l" else "content changed"
    return "mode changed"


class GangSync:
    """The sync state of one (reservation, workspace root) pair in one controller process."""

    def __init__(
        self, core: SyncHost, res: Reservation, root: Path, options: SyncOptions | None = None
    ) -> None:
        self.core = core
        self.res = res
        self.root = root
        self.options = options or SyncOptions()
        key = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        self.scanner = Scanner(root, self.options.max_file_size, core.config.home / "sync" / f"{key}.json")
        self.lock = asyncio.Lock()
        self._on_transfer: Transfer | None = None
        self._repair_lock = asyncio.Lock()
        self._repair_cache: dict[str, _Blob] = {}
        self._planned = 0
        self._moved = 0
        self.tracker: ChangeTracker | None = None
        self.unsaved = False  # tracked syncs save the stat cache when idle, not on every edit
        self.last_sync = 0.0
        compress = self.options.compress
        self.compress = compress if compress is not None else any(p.address not in LOOPBACK for p in res.pods)

    def check_root(self) -> None:
        if not self.root.is_dir():
            raise InvalidRequest(
                f"workspace path {self.root} does not exist or is not a directory",
                "run from your project folder or pass --path DIR",
            )

    def _pod_key(self, pod: Pod) -> str:
        return f"{self.res.id}/{pod.name}"

    async def sync(
        self,
        hints: set[str] | None = None,
        *,
        progress: Progress | None = None,
        dry_run: bool = False,
        persist: bool = True,
        on_transfer: Transfer | None = None,
    ) -> SyncReport:
        """Scan (all, or the hinted paths), then bring every pod to the new manifest.

        ``on_transfer(bytes_moved, bytes_planned)`` follows the content upload (a progress bar for a
        first, large sync); it is called from the event loop after every frame of content.
        """
        self.check_root()
        async with self.lock:
            taken: set[str] | None = None
            tracked = hints is None and self.core.track_changes
            if tracked:
                if self.tracker is None:
                    key = self.scanner.cache_path.stem if self.scanner.cache_path else "tracker"
                    state = self.core.config.home / "trackers" / f"{key}-{self.res.id}"
                    self.tracker = ChangeTracker(self.root, self.scanner.rules, state)
                hints = taken = await asyncio.to_thread(self.tracker.take)
                # A walk saves the stat cache as before (and warns if it cannot); tracked edits
                # save it once syncs rest (drop_gangs), not on every edit.
                persist = persist and taken is None
            try:
                report = await self._sync_locked(hints, progress, dry_run, persist, on_transfer)
            except BaseException:
                if tracked and self.tracker is not None:
                    self.tracker.give_back(taken)
                raise
            if tracked and self.tracker is not None:
                if dry_run:
                    self.tracker.give_back(taken)
                else:
                    self.unsaved, self.last_sync = True, time.monotonic()
            return report

    async def save(self) -> None:
        """Write the stat cache (and what each pod acknowledged) if a tracked sync changed it."""
        if self.unsaved:
            self.unsaved = False
            await asyncio.to_thread(self.scanner.save)

    async def _sync_locked(
        self,
        hints: set[str] | None,
        progress: Progress | None,
        dry_run: bool,
        persist: bool,
        on_transfer: Transfer | None,
    ) -> SyncReport:
        self._on_transfer, self._planned, self._moved = on_transfer, 0, 0
        self._repair_cache = {}
        t0 = time.perf_counter()
        say = progress or (lambda _: None)
        if hints is None or len(hints) > 64:
            scan = await asyncio.to_thread(self.scanner.scan, None)
        elif hints:  # may hash large files: off the loop, which serves other clients meanwhile
            scan = await asyncio.to_thread(self.scanner.scan, hints)
        else:
            scan = self.scanner.scan(hints)
        say(
            f"scanned {len(scan.manifest.entries)} entries ({scan.hashed} hashed) in {scan.seconds * 1000:.0f} ms"
        )
        base = self.scanner.manifest
        blobs = await self._stage(base, scan)
        # Publish nothing from a tree that was deleted while it was read (it would look like
        # "every file deleted" or a partial tree); this raises WorkspaceVanished, one line.
        root_ident(self.root)
        report = SyncReport(
            reservation=self.res.id,
            root_path=str(self.root),
            root=scan.manifest.root_hex,
            noop=not scan.changes,
            dry_run=dry_run,
            files=scan.manifest.files,
            hashed=scan.hashed,
            scan_ms=scan.seconds * 1000,
            skipped=scan.skipped,
        )
        for path, entry in sorted(scan.changes.items()):
            if entry is not None and entry.kind == "d" and path in base.entries:
                continue
            why = _why(base.entries.get(path), entry)
            report.changes.append(Change(path=path, why=why))
            if why == "added":
                report.added += 1
            elif why == "deleted":
                report.deleted += 1
            else:
                report.changed += 1
        if not dry_run:
            self.scanner.commit(scan)
        conns = await self.core.connect(self.res)
        uplink0 = sum(c.bytes_out for c in conns)
        mine = [a for k, a in self.scanner.acked.items() if k.startswith(self.res.id + "/")]
        generation = max((int(str(a[0])) for a in mine), default=0) + 1
        plan = _Plan(base, scan.manifest, scan.changes, blobs, generation)
        payload = sum(b.length for b in blobs.values())
        relay_wanted = self.options.relay == "on" or (
            self.options.relay == "auto" and any(p.address not in LOOPBACK for p in self.res.pods)
        )
        inline = all(b.source is None for b in blobs.values()) and payload <= self.options.frame_limit
        if relay_wanted and not dry_run and len(conns) >= self.options.relay_min_pods:
            # Large content: pulled from the leader; the frames (and small content): down the tree.
            if payload >= self.options.relay_min_bytes or not inline:
                results = await self._relay_fan_out(conns, plan, dry_run, t0, say)
            else:
                results = await self._tree_or_star(conns, plan, t0, say)
        else:
            results = await asyncio.gather(
                *(
                    self._pod(pod, conn, plan, dry_run, t0)
                    for pod, conn in zip(self.res.pods, conns, strict=True)
                )
            )
        report.pods = list(results)
        self._repair_cache = {}
        report.bytes_sent = sum(p.bytes_sent for p in report.pods)
        report.uplink_bytes = sum(c.bytes_out for c in conns) - uplink0
        if dry_run:
            report.noop = not scan.changes and all(p.root == report.root for p in report.pods)
        else:
            report.noop = all(p.status == "noop" for p in report.pods)
        gens = [p.generation for p in report.pods if p.generation is not None]
        report.generation = max(gens) if gens else None
        report.total_ms = (time.perf_counter() - t0) * 1000
        # A no-op changed nothing worth persisting: skip rewriting the whole stat cache.
        if not dry_run and persist and not (report.noop and not scan.hashed):
            try:
                await asyncio.to_thread(self.scanner.save)
            except OSError as exc:  # the cache only saves re-hashing: a warning, not a failure
                report.warnings.append(
                    f"could not save the stat cache ({exc.strerror}); the next sync re-hashes every file"
                )
        failed = [p for p in report.pods if p.status == "failed"]
        if failed:
            raise SyncError(
                f"{len(failed)} of {len(report.pods)} pod(s) did not take generation "
                f"{report.generation}: " + "; ".join(f"{p.pod}: {p.error}" for p in failed),
                "nothing partial is current on them; run neo sync again to repair",
                report,
            )
        say(report.summary())
        return report

    # ------------------------------------------------------------------ stage
    async def _stage(self, base: Manifest, scan: ScanResult) -> dict[str, _Blob]:
        """Read the content the pods lack; fix up files that changed or vanished since the scan."""
        wanted = {
            path: e
            for path, e in scan.changes.items()
            if e is not None and e.kind == "f" and not base.holds(e.ref)
        }
        return await asyncio.to_thread(self._read_blobs, wanted, scan)

    def _read_blobs(self, wanted: dict[str, Entry], scan: ScanResult) -> dict[str, _Blob]:
        """Content of ``wanted``, read from the very inodes the scan saw (never a swapped-in link or FIFO)."""
        blobs: dict[str, _Blob] = {}
        for path, entry in wanted.items():
            if entry.ref in blobs:
                continue
            full = os.path.join(self.root, path)
            expected = scan.ident_of(path, entry)
            try:
                with os.fdopen(files.open_file(full, expected), "rb") as f:
                    st = os.fstat(f.fileno())
                    if st.st_size >= STREAM_CHUNK:
                        blob = self._large_blob(path, entry, st, scan)
                        blobs[blob.digest] = blob
                        continue
                    # read(n) would allocate n bytes up front, for every small file: size it first.
                    data = f.read(min(st.st_size, self.options.max_file_size) + 1)
            except OSError as exc:
                # Deleted, swapped or made unreadable between scan and send: not in this generation.
                self._drop(
                    scan,
                    path,
                    exc.reason if isinstance(exc, Swapped) else f"changed while syncing ({exc.strerror})",
                )
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest != entry.ref:  # rewritten since the scan: send what we read, consistently
                fresh = entry._replace(ref=digest, size=len(data), key=None)
                scan.manifest.put(path, fresh)
                scan.changes[path] = fresh
            blobs[digest] = self._blob(digest, entry.mode, data)
        return blobs

    def _drop(self, scan: ScanResult, path: str, why: str) -> None:
        scan.manifest.put(path, None)
        scan.changes = diff(self.scanner.manifest, scan.manifest, set(scan.changes) | {path})
        scan.skipped[path] = f"{why}; not synced this time, the next sync takes its new state"

    def _large_blob(self, path: str, entry: Entry, st: os.stat_result, scan: ScanResult) -> _Blob:
        """A blob streamed when sent; re-hashed (in chunks) only if the file changed since the scan."""
        full = os.path.join(self.root, path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if entry.key != key or entry.size != st.st_size:
            digest, size = hash_file(full, files.ident(st))
            if digest != entry.ref:
                fresh = entry._replace(ref=digest, size=size, key=None)
                scan.manifest.put(path, fresh)
                scan.changes[path] = fresh
                entry = fresh
        return _Blob(entry.ref, entry.mode, b"", False, full, files.ident(st), st.st_size)

    def _blob(self, digest: str, mode: int, data: bytes) -> _Blob:
        if self.compress and len(data) > 512:
            packed = zlib.compress(data, 1)
            if len(packed) < 0.9 * len(data):
                return _Blob(digest, mode, packed, True)
        return _Blob(digest, mode, data, False)

    async def _relay_fan_out(
        self, conns: list[AgentConnection], plan: _Plan, dry_run: bool, t0: float, say: Progress
    ) -> list[PodSync]:
        """Leader first (content from the controller), then every other pod pulls from the leader.

        A pod whose pull fails still gets the content: its ``ws_sync`` reports what is missing and
        the controller sends it directly, so relay is an optimisation, never a new way to fail.
        """
        leader, rest = self.res.pods[0], list(zip(self.res.pods[1:], conns[1:], strict=True))
        first = await self._pod(leader, conns[0], plan, dry_run, t0)
        if first.status == "failed":
            others = await asyncio.gather(*(self._pod(p, c, plan, dry_run, t0) for p, c in rest))
            return [first, *others]
        want = [[b.digest, b.mode] for b in plan.blobs.values()]
        try:
            # The listener binds only the address the other pods use to reach the leader.
            offer = await conns[0].call("ws_relay_serve", host=leader.address)
        except NeoError as exc:
            say(f"relay unavailable ({exc.message}); sending to every pod directly")
            others = await asyncio.gather(*(self._pod(p, c, plan, dry_run, t0) for p, c in rest))
            return [first, *others]

        async def pull(conn: AgentConnection) -> int:
            try:
                reply = await conn.call(
                    "ws_relay_fetch", host=leader.address, port=offer["port"], token=offer["token"], want=want
                )
                return int(reply.get("bytes", 0))
            except NeoError:
                return 0

        try:
            relayed = await asyncio.gather(*(pull(c) for _, c in rest))
        finally:
            with contextlib.suppress(NeoError):  # closed when the pulls end, not left listening
                await conns[0].call("ws_relay_close", token=offer["token"])
        say(f"relay: the leader served {sum(relayed) / 2**20:.1f} MiB to {len(rest)} pod(s)")
        light = _Plan(plan.base, plan.new, plan.changes, {}, plan.generation)
        others = (await self._tree_or_star(conns, light, t0, say))[1:]  # the leader answers noop
        for out, got in zip(others, relayed, strict=True):
            out.relayed_bytes = got
        return [first, *others]

    async def _star(self, conns: list[AgentConnection], plan: _Plan, t0: float) -> list[PodSync]:
        pods = self.res.pods
        return list(
            await asyncio.gather(
                *(self._pod(p, c, plan, False, t0) for p, c in zip(pods, conns, strict=True))
            )
        )

    async def _tree_or_star(
        self, conns: list[AgentConnection], plan: _Plan, t0: float, say: Progress
    ) -> list[PodSync]:
        """One ``ws_sync`` to the relay tree's root, which forwards it to every pod; the star if
        there is no tree. A pod the tree did not bring to the new root is synced directly."""
        pods = self.res.pods
        tree_id = await tree.ensure(self.res.id, pods, conns, self.options.relay_fanout)
        if tree_id is None:
            return await self._star(conns, plan, t0)
        try:
            reply, sent = await self._send(conns[0], plan, full=False, extra={"tree": tree_id})
        except NeoError as exc:
            say(f"relay tree unavailable ({exc.message}); sending to every pod directly")
            tree.broken(self.res.id, conns[0])
            return await self._star(conns, plan, t0)
        latency = (time.perf_counter() - t0) * 1000
        got = {str(r.get("pod")): r for r in reply.get("results", []) if isinstance(r, dict)}
        if any(p.name not in got for p in pods):
            say("relay tree: some pods were not reached; sending to them directly")
            tree.broken(self.res.id, conns[0])
        out: list[PodSync | None] = []
        retry: list[int] = []
        for i, pod in enumerate(pods):
            r = got.get(pod.name)
            if r is None or r.get("status") not in ("applied", "noop") or r.get("root") != plan.new.root_hex:
                out.append(None)
                retry.append(i)
                continue
            done = PodSync(pod=pod.name, rank=pod.rank, status=str(r["status"]), latency_ms=latency)
            done.generation, done.root = int(r["generation"]), str(r["root"])
            done.bytes_sent = sent if i == 0 else 0
            self.scanner.acked[self._pod_key(pod)] = [done.generation, done.root]
            out.append(done)
        direct = await asyncio.gather(*(self._pod(pods[i], conns[i], plan, False, t0) for i in retry))
        for i, res in zip(retry, direct, strict=True):
            out[i] = res
        say(f"relay tree (fan-out {self.options.relay_fanout}): {len(pods) - len(retry)} pod(s) via the tree")
        return [o for o in out if o is not None]

    # ------------------------------------------------------------------ transition
    async def _pod(self, pod: Pod, conn: AgentConnection, plan: _Plan, dry_run: bool, t0: float) -> PodSync:
        out = PodSync(pod=pod.name, rank=pod.rank, status="failed")
        key = self._pod_key(pod)
        acked = self.scanner.acked.get(key)
        try:
            if dry_run:
                state = await conn.call("ws_state")
                out.status, out.generation, out.root = "dry-run", state["generation"], state["root"]
                return out
            sent = 0
            if acked is not None and acked[1] != plan.base.root_hex:
                reply: dict[str, Any] = {"status": "mismatch"}  # we know it is elsewhere: repair now
            else:
                reply, sent = await self._send(conn, plan, full=False)
            if reply["status"] == "mismatch":
                reply, more = await self._repair(conn, plan.new, plan.generation)
                sent += more
                if reply["status"] == "applied":
                    reply["status"] = "repaired"
            out.status = reply["status"]
            out.generation, out.root, out.bytes_sent = reply["generation"], reply["root"], sent
            self.scanner.acked[key] = [out.generation, out.root]
        except NeoError as exc:
            out.error = exc.message
            self.scanner.acked.pop(key, None)
        finally:
            out.latency_ms = (time.perf_counter() - t0) * 1000
        return out

    async def _repair(
        self, conn: AgentConnection, new: Manifest, generation: int
    ) -> tuple[dict[str, Any], int]:
        """Bring a pod in an unknown state to ``new``, sending only content it does not hold."""
        _, payload = await conn.request("ws_manifest")
        doc = json.loads(zlib.decompress(payload))
        have = set(doc["objects"])
        full = doc["entries"] is None
        pod_m = Manifest() if full else Manifest.from_wire(doc["entries"])
        if not full and pod_m.root_hex == new.root_hex:
            return {"status": "noop", "generation": doc["generation"], "root": doc["root"]}, 0
        changes: dict[str, Entry | None] = dict(new.entries) if full else diff(pod_m, new)
        wanted = {p: e for p, e in changes.items() if e is not None and e.kind == "f" and e.ref not in have}
        # Content is read as of now; a file that changed since the scan is sent as it is now and
        # the pod's root check refuses the mix, so the next sync (which rescans) repairs it.
        scan = ScanResult(new.copy(), dict(changes), {})
        # Pods repaired in the same sync share what was read: the tree is read once, not per pod.
        async with self._repair_lock:
            unread = {p: e for p, e in wanted.items() if e.ref not in self._repair_cache}
            self._repair_cache.update(await asyncio.to_thread(self._read_blobs, unread, scan))
        blobs = {e.ref: self._repair_cache[e.ref] for e in wanted.values() if e.ref in self._repair_cache}
        return await self._send(conn, _Plan(pod_m, new, changes, blobs, generation), full=full)

    async def _send(
        self, conn: AgentConnection, plan: _Plan, *, full: bool, extra: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], int]:
        """One ``ws_sync`` (content first in ``ws_objects`` frames when it exceeds one frame)."""
        ops = [[p] if e is None else e.wire(p) for p, e in plan.changes.items()]
        ops_bytes = json.dumps(ops, separators=(",", ":")).encode("ascii") if ops else b""
        sent = 0
        self._planned += sum(b.length for b in plan.blobs.values())
        # Smaller frames when someone watches the upload, so a progress bar moves smoothly.
        limit = (
            min(self.options.frame_limit, PROGRESS_FRAME) if self._on_transfer else self.options.frame_limit
        )
        batch: list[_Blob] = []
        size = 0
        for blob in plan.blobs.values():
            if blob.source is not None:
                sent += await self._stream(conn, blob)
                continue
            if batch and size + len(blob.data) > limit:
                sent += await self._objects(conn, batch)
                batch, size = [], 0
            batch.append(blob)
            size += len(blob.data)
        for attempt in range(2):
            header = {
                "base": plan.base.root_hex,
                "root": plan.new.root_hex,
                "generation": plan.generation,
                "full": full,
                "ops_len": len(ops_bytes),
                "blobs": [[b.digest, len(b.data), b.compressed, b.mode] for b in batch],
                **(extra or {}),
            }
            payload = ops_bytes + b"".join(b.data for b in batch)
            reply = await conn.call("ws_sync", payload, **header)
            sent += len(payload)
            self._transferred(sum(len(b.data) for b in batch))
            if reply["status"] != "missing" or attempt:
                return reply, sent
            # The pod lost content we expected it to hold (collected, or copied on EMLINK).
            missing = set(reply["digests"])
            wanted = {p: e for p, e in plan.new.entries.items() if e.kind == "f" and e.ref in missing}
            scan = ScanResult(plan.new.copy(), {}, {})
            batch = []
            for blob in (await asyncio.to_thread(self._read_blobs, wanted, scan)).values():
                if blob.source is not None:
                    sent += await self._stream(conn, blob)
                else:
                    batch.append(blob)
        raise AssertionError("unreachable")

    async def _stream(self, conn: AgentConnection, blob: _Blob) -> int:
        """Send a large file in ``STREAM_CHUNK`` pieces (``ws_object_part``); memory stays bounded.

        The pod hashes what arrives and stores the object only if it matches ``blob.digest``;
        a file rewritten while it is sent fails this sync with one line (the next sync rescans).
        """
        assert blob.source is not None
        rel = os.path.relpath(blob.source, self.root)
        try:
            f = os.fdopen(await asyncio.to_thread(files.open_file, blob.source, blob.ident), "rb")
        except OSError as exc:
            raise BackendError(f"{rel} changed while syncing ({exc.strerror}); run neo sync again") from None
        sent = offset = 0
        with f:
            while offset < blob.size:
                chunk = await asyncio.to_thread(f.read, STREAM_CHUNK)
                if not chunk:
                    raise BackendError(f"{rel} shrank while syncing; run neo sync again")
                packed = zlib.compress(chunk, 1) if self.compress else b""
                compressed = bool(packed) and len(packed) < 0.9 * len(chunk)
                data = packed if compressed else chunk
                try:
                    await conn.call(
                        "ws_object_part",
                        data,
                        digest=blob.digest,
                        mode=blob.mode,
                        offset=offset,
                        total=blob.size,
                        compressed=compressed,
                    )
                except AgentError as exc:
                    if exc.agent_code == "sync_refused" and "corrupted" in exc.message:
                        raise BackendError(f"{rel} changed while syncing; run neo sync again") from None
                    raise
                offset += len(chunk)
                sent += len(data)
                self._transferred(len(data))
        return sent

    async def _objects(self, conn: AgentConnection, batch: list[_Blob]) -> int:
        payload = b"".join(b.data for b in batch)
        await conn.call(
            "ws_objects", payload, blobs=[[b.digest, len(b.data), b.compressed, b.mode] for b in batch]
        )
        self._transferred(len(payload))
        return len(payload)

    def _transferred(self, nbytes: int) -> None:
        self._moved += nbytes
        if self._on_transfer is not None and nbytes:
            self._on_transfer(self._moved, max(self._planned, self._moved))


_registry: weakref.WeakKeyDictionary[SyncHost, dict[tuple[str, str], GangSync]] = weakref.WeakKeyDictionary()


def gangs_of(core: SyncHost) -> list[GangSync]:
    return list(_registry.get(core, {}).values())


async def drop_gangs(core: SyncHost, live: set[str], idle: float = 5.0) -> None:
    """Forget the sync state (trackers, in-memory manifests) of reservations not in ``live``;
    save the stat caches of the others that changed and then rested for ``idle`` seconds
    (writing the whole cache is O(tree): not on every edit)."""
    per_core = _registry.get(core, {})
    for key, gang in list(per_core.items()):
        if key[0] not in live:
            del per_core[key]
            if gang.tracker is not None:
                await asyncio.to_thread(gang.tracker.close)
            await gang.save()
        elif time.monotonic() - gang.last_sync > idle:
            await gang.save()


def gang_sync_for(
    core: SyncHost, res: Reservation, root: Path, options: SyncOptions | None = None
) -> GangSync:
    """The long-lived sync state for (core, reservation, root): the manifest stays in memory."""
    per_core = _registry.setdefault(core, {})
    key = (res.id, str(root))
    if key not in per_core or options is not None:
        per_core[key] = GangSync(core, res, root, options)
    return per_core[key]
