"""The SSH backend: a fleet of GPU hosts shared by a team, gang-reserved with leases on the hosts.

There is no scheduler and no central server, so the hosts themselves hold the truth: each GPU slot
of a host is a lease file there (:mod:`neo_agent.gpu_leases`). Lifecycle:

* **allocate** - ask every host in parallel what it has (``leases inventory``: GPUs from
  nvidia-smi, live leases), pick hosts with room (best fit: the fullest host that still fits,
  leaving whole hosts to bigger gangs), save the pending record, then take the leases host by
  host in the *global host order* (hostname + machine id, the same for every user). Two users
  racing for the same hosts meet on the first contested host, where the host's lock lets exactly
  one through; the other gives back what it took and tries again with fresh numbers, or reports
  NoCapacity. No one waits while holding, so no one deadlocks; nothing partial is kept.
* **start** - ``agent.pyz keep`` on every host: a keeper in its own session starts the pod's agent
  and renews the leases every TTL/3 while the agent lives (idle TTL and budget deadline are the
  agent's, as on every backend), so GPUs are held and returned with no controller running.
* **open_stream** - ``ssh host -- python3 -c STUB AGENT_DIR HASH``: the same agent protocol as
  every backend.
* **release** - ``agent.pyz release`` on every host: stop keeper and agent, kill leftovers, give
  the leases, remove the pod, and report what remains; anything left is an error naming the host.
* **reconcile** - active reservations whose leases are gone are reported lost with the keeper's
  reason; leases of this store's released reservations are given back.

Pods live in ``base_dir/<reservation>/<host>/`` on each host.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from jupyter_neo.backends.base import Capacity, NodeDirBackend, report_progress
from jupyter_neo.backends.handles import SshHandle, handle_of
from jupyter_neo.backends.ssh.fleet import HostAccess, HostError, HostReport, hosts_of
from jupyter_neo.backends.ssh.options import SshOptions, parse_options
from jupyter_neo.config import Config
from jupyter_neo.errors import BackendError, ConfigError, NoCapacity
from jupyter_neo.identity import controller_identity, owner
from jupyter_neo.model import Cluster, Pod, Reservation, ReservationState, utcnow
from jupyter_neo.store import Store
from jupyter_neo.transport.streams import ByteStream

ATTEMPTS = 3  # placements retried when another reservation took a chosen host's GPUs first


class _Raced(Exception):
    """A chosen host's GPUs were taken between inventory and lease."""


class SshBackend(NodeDirBackend):
    """Gangs as GPU leases on SSH hosts; pods reached with ``ssh host python3 -c STUB``."""

    handle_type = SshHandle

    def __init__(self, cluster: Cluster, config: Config, store: Store) -> None:
        super().__init__(cluster, config, store)
        self.options: SshOptions = parse_options(cluster.name, cluster.options)
        self.base_dir, self.remote_python = self.options.base_dir, self.options.python
        if cluster.nodes != len(self.options.hosts):
            raise ConfigError(
                f"cluster {cluster.name!r}: nodes: {cluster.nodes}, but options.hosts lists "
                f"{len(self.options.hosts)} host(s)",
                "leave nodes: out for an ssh cluster (it is the number of hosts)",
            )
        self.hosts = {
            h.name: HostAccess(h, self.options) for h in hosts_of(self.options, cluster.gpus_per_node)
        }

    # ------------------------------------------------------------------ places
    def pod_env(self, res: Reservation, pod: Pod) -> dict[str, str]:
        """The GPU slots this pod leased, as the only devices its processes see."""
        env = super().pod_env(res, pod)
        slots = ",".join(str(g) for g in pod.gpus)
        env.update(CUDA_VISIBLE_DEVICES=slots, NEO_GPU_SLOTS=slots)
        return env

    def _access(self, pod: Pod) -> HostAccess:
        return self.hosts[handle_of(pod, SshHandle).host]

    # ------------------------------------------------------------------ capacity
    async def survey(self) -> list[HostReport]:
        """Every host's inventory, in parallel; unreachable or broken hosts carry their problem."""
        me = owner()
        return list(await asyncio.gather(*(a.inventory(me) for a in self.hosts.values())))

    async def free_gpus(self) -> int:
        return sum(r.free() for r in await self.survey())

    async def capacity(self) -> Capacity:
        reports = await self.survey()
        return Capacity(free=sum(r.free() for r in reports), hosts=[r.status() for r in reports])

    # ------------------------------------------------------------------ allocate
    async def allocate(self, res: Reservation) -> None:
        """Lease ``res.gpus_per_node`` GPUs on ``res.nodes`` hosts, all or none (module docstring)."""
        try:
            for attempt in range(1, ATTEMPTS + 1):
                chosen = self._choose(await self.survey(), res)
                res.pods = [
                    Pod(
                        name=f"{res.id}-{rank}-{r.host.name}",
                        rank=rank,
                        address=r.address,
                        handle=SshHandle(
                            host=r.host.name, dir=self.pod_dir(res.id, res.owner, r.host.name), total=r.gpus
                        ),
                    )
                    for rank, r in enumerate(chosen)
                ]
                self.store.save_reservation(res, **controller_identity())
                try:
                    await self._take_in_order(res)
                    self.store.save_reservation(res, **controller_identity())
                    return
                except _Raced as exc:
                    await self._give_all(res)
                    report_progress(f"{self.cluster.name}: {exc} (attempt {attempt} of {ATTEMPTS})")
            raise NoCapacity(
                f"cluster {self.cluster.name!r}: other reservations took the free GPUs while this one "
                f"was being placed ({ATTEMPTS} attempts)",
                "try again, or see who holds them: neo clusters",
            )
        except BaseException as exc:
            await asyncio.shield(self.abandon(res, exc))
            raise

    def _choose(self, reports: list[HostReport], res: Reservation) -> list[HostReport]:
        """``res.nodes`` hosts with room, fullest-that-fits first; returned in the global order."""
        need = res.gpus_per_node
        fits = sorted((r for r in reports if r.free() >= need), key=lambda r: (r.free(), r.order))
        if len(fits) < res.nodes:
            raise self._shortfall(reports, res, len(fits))
        return sorted(fits[: res.nodes], key=lambda r: r.order)

    def _shortfall(self, reports: list[HostReport], res: Reservation, fitting: int) -> NoCapacity:
        problems = [r.problem for r in reports if r.problem is not None]
        busy = ", ".join(
            f"{r.host.name} {r.free()}/{r.gpus} free"
            + (f" (held by {', '.join(sorted({h['owner'] for h in r.holders}))})" if r.holders else "")
            for r in reports
            if r.problem is None
        )
        head = "; ".join(p.message for p in problems)
        tail = f"{fitting} of {res.nodes} host(s) have {res.gpus_per_node} GPU(s) free" + (
            f" ({busy})" if busy else ""
        )
        return NoCapacity(
            f"cluster {self.cluster.name!r}: " + (f"{head}; {tail}" if head else tail),
            problems[0].hint if problems else "release a reservation (neo status), or see: neo clusters",
        )

    async def _take_in_order(self, res: Reservation) -> None:
        """Take each host's leases in turn (the pods are already in the global order)."""
        ttl = f"{self.options.lease_ttl_s:g}"
        for pod in res.pods:
            access = self._access(pod)
            out = await access.verb_json(
                res.owner, "leases", "take", self.options.lease_dir, res.id, res.owner,
                str(res.gpus_per_node), str(handle_of(pod, SshHandle).total), ttl, timeout=30,
            )  # fmt: skip
            if not out.get("ok"):
                raise _Raced(f"{access.host.name}: only {out.get('free')} GPU(s) left after a race")
            pod.gpus = [int(s) for s in out["slots"]]

    async def _give_all(self, res: Reservation) -> None:
        """Give back every lease ``res`` took (a lost race), on every host of the attempt."""

        async def give(pod: Pod) -> None:
            access = self._access(pod)
            await access.verb_json(res.owner, "leases", "give", self.options.lease_dir, res.id, timeout=30)

        await asyncio.gather(*(give(p) for p in res.pods))

    async def start(self, res: Reservation) -> None:
        """Start every pod's keeper (which starts its agent and renews its leases), in parallel."""
        await asyncio.gather(*(self._start_pod(res, pod) for pod in res.pods))

    async def _start_pod(self, res: Reservation, pod: Pod) -> None:
        access = self._access(pod)
        slots = ",".join(str(g) for g in pod.gpus)
        ttl = f"{self.options.lease_ttl_s:g}"
        out = await access.verb(
            res.owner, "keep", self.node_dir(pod), self.options.lease_dir, res.id, ttl, slots, timeout=90
        )
        if not out.strip().startswith("ok"):
            raise HostError(access.host, f"the pod did not start: {out.strip()[-300:]}")

    async def open_stream(self, pod: Pod, argv: list[str]) -> ByteStream:
        access = self._access(pod)
        return await access.cmd.stream(argv, label=f"ssh:{access.host.name}:{pod.name}")

    # ------------------------------------------------------------------ release
    async def release(self, res: Reservation) -> None:
        """Stop every pod and give its leases back; verify on every host that nothing remains."""

        async def one(pod: Pod) -> None:
            access = self._access(pod)
            left = await access.verb_json(
                res.owner, "release", self.node_dir(pod), self.options.lease_dir, res.id, timeout=60
            )
            if left.get("leases") or left.get("procs"):
                raise HostError(
                    access.host,
                    f"after release {len(left.get('leases') or [])} lease(s) and processes "
                    f"{left.get('procs')} of {res.id} remain",
                    f"check on the host: ls {self.options.lease_dir}; ps -fp PID",
                )

        results = await asyncio.gather(
            *(one(p) for p in res.pods if isinstance(p.handle, SshHandle) and p.handle.host in self.hosts),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            first = errors[0]
            if isinstance(first, BackendError):
                raise BackendError(
                    f"{first.message}; its agent stops by itself at the idle TTL and its leases then "
                    f"expire after {self.options.lease_ttl_s:g}s",
                    first.hint,
                )
            raise first

    # ------------------------------------------------------------------ reconcile
    async def reconcile(self, known: dict[str, Reservation]) -> dict[str, str]:
        """Report active reservations whose pods stopped (with why); give back released ones' leases."""
        lost: dict[str, str] = {}
        for rid, res in known.items():
            if not res.live:
                continue
            why = await self._why_gone(res)
            if why:
                lost[rid] = why
        recent = utcnow() - timedelta(days=1)  # older releases were verified long ago
        stale = {
            rid
            for rid, r in known.items()
            if r.state is ReservationState.RELEASED and r.released_at and r.released_at > recent
        }
        if stale:
            for report in await self.survey():
                for holder in report.holders:
                    if holder["reservation"] in stale:
                        access = self.hosts[report.host.name]
                        with contextlib.suppress(BackendError):
                            await access.verb_json(
                                owner(), "leases", "give", self.options.lease_dir, holder["reservation"]
                            )
        return lost

    async def _why_gone(self, res: Reservation) -> str | None:
        async def state(pod: Pod) -> tuple[Pod, dict[str, Any] | None]:
            access = self._access(pod)
            try:
                doc = await access.verb_json(
                    res.owner, "pod", self.node_dir(pod), self.options.lease_dir, res.id, timeout=30
                )
            except BackendError:
                return pod, None  # unreachable now is not gone: the run's probe decides that
            return pod, doc

        for pod, doc in await asyncio.gather(*(state(p) for p in res.pods)):
            # Ended: its agent recorded why (it is stopping, or has), or nothing of it is left.
            if doc is not None and (doc.get("reason") or (not doc.get("leases") and not doc.get("running"))):
                return f"{doc.get('reason') or 'its agent and leases are gone'} (host {handle_of(pod, SshHandle).host})"
        return None
