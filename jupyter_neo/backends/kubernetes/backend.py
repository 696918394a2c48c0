"""KubernetesBackend: a reservation is N warm pods + a headless Service (+ a PodGroup).

Flow (all-or-nothing): ``allocate`` picks the gang mechanism, pre-checks capacity from node
allocatable minus bound pod requests when RBAC allows (racy; it only fails fast), names the pods
and records the pending reservation. ``start`` creates the gang object, the Service and every pod,
then waits until all run; on shortfall it raises NoCapacity with the scheduler's own words and
the core's rollback calls ``release``, which deletes everything by label and verifies it is gone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jupyter_neo.backends.base import Backend, Capacity
from jupyter_neo.backends.handles import KubernetesHandle, handle_of
from jupyter_neo.backends.kubernetes import gang as gangs
from jupyter_neo.backends.kubernetes import manifests as mf
from jupyter_neo.backends.kubernetes.api import RBAC_HINT, KubeApi, Obj
from jupyter_neo.backends.kubernetes.options import KubeOptions, kube_options
from jupyter_neo.datasets.spec import DatasetUse
from jupyter_neo.errors import BackendError, NeoError, NoCapacity
from jupyter_neo.identity import controller_identity
from jupyter_neo.model import Pod, Reservation, ReservationState
from jupyter_neo.transport.streams import ByteStream

POLL_S = 0.5
RELEASE_VERIFY_S = 60.0
IMAGE_ERRORS = {
    "ErrImagePull",
    "ErrImageNeverPull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
}


class KubernetesBackend(Backend):
    """One kubeconfig context + namespace as a cluster."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.opts: KubeOptions = kube_options(self.cluster)
        self._api: KubeApi | None = None
        self._gang: str | None = None

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi(self.opts, self.cluster.name)
        return self._api

    # ------------------------------------------------------------------ gang + objects
    async def gang_mechanism(self) -> str:
        """The configured mechanism, or the one API discovery finds (cached per process)."""
        if self.opts.gang != "auto":
            return self.opts.gang
        if self._gang is None:
            groups = await self.api.api_groups()
            queues: list[str] = []
            if gangs.KUEUE_GROUP in groups and not self.opts.queue:
                version = await self.api.preferred_version(gangs.KUEUE_GROUP) or "v1beta2"
                try:
                    items = await self.api.custom_list(gangs.KUEUE_GROUP, version, "localqueues")
                    queues = [q["metadata"]["name"] for q in items]
                except NeoError:
                    queues = []
                if queues:
                    self.opts = self.opts.model_copy(update={"queue": queues[0]})
            self._gang = gangs.detect(groups, queues, self.opts.queue)
        return self._gang

    def objects(self, res: Reservation, gang: str) -> list[Obj]:
        return mf.build_objects(
            self.cluster.name,
            self.opts,
            res,
            gang=gang,
            node_gpus=self.cluster.gpus_per_node,
            env=dict(self.cluster.env),
        )

    # ------------------------------------------------------------------ capacity
    async def free_gpus(self) -> int:
        try:
            per_node = await self._free_per_node()
        except NeoError:
            return 0
        if per_node is None:
            held = sum(
                r.gpus for r in self.store.reservations(active_only=True) if r.cluster == self.cluster.name
            )
            return max(0, self.cluster.total_gpus - held)
        return sum(per_node)

    async def capacity(self) -> Capacity:
        """Free, allocatable and requested GPUs of the eligible nodes (RBAC permitting)."""
        try:
            per_node = await self._gpus_per_node()
        except NeoError:
            return Capacity(free=0)
        if per_node is None:
            return Capacity(free=await self.free_gpus())
        alloc = sum(a for a, _ in per_node)
        requested = sum(min(a, u) for a, u in per_node)
        return Capacity(free=sum(max(0, a - u) for a, u in per_node), allocatable=alloc, requested=requested)

    async def _free_per_node(self) -> list[int] | None:
        """Free GPUs per eligible node; None when RBAC hides nodes (a namespaced Role)."""
        per_node = await self._gpus_per_node()
        return None if per_node is None else [max(0, a - u) for a, u in per_node]

    async def _gpus_per_node(self) -> list[tuple[int, int]] | None:
        """(allocatable, requested) GPUs per eligible node; None when RBAC hides nodes."""
        gpu = self.opts.profile_spec().gpu_resource
        try:
            nodes = await self.api.nodes()
            pods = await self.api.all_pods()
        except BackendError as exc:
            if "not allowed" in exc.message:
                return None
            raise
        want = dict(self.opts.node_selector)
        if self.opts.gpu_product:
            want[self.opts.profile_spec().gpu_label] = self.opts.gpu_product
        used: dict[str, int] = {}
        for p in pods:
            node = p.get("spec", {}).get("nodeName")
            if not node or p.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for c in p["spec"].get("containers", []):
                req = c.get("resources", {}).get("requests") or c.get("resources", {}).get("limits") or {}
                used[node] = used.get(node, 0) + int(req.get(gpu, 0))
        out = []
        for n in nodes:
            labels = n["metadata"].get("labels", {})
            if any(labels.get(k) != v for k, v in want.items()) or n.get("spec", {}).get("unschedulable"):
                continue
            alloc = int(n.get("status", {}).get("allocatable", {}).get(gpu, 0))
            if alloc:
                out.append((alloc, used.get(n["metadata"]["name"], 0)))
        return out

    async def allocate(self, res: Reservation) -> None:
        gang = await self.gang_mechanism()
        per_node = await self._free_per_node()
        if per_node is not None:
            slots = sum(f // res.gpus_per_node for f in per_node)
            if slots < res.nodes:
                raise NoCapacity(
                    f"cluster {self.cluster.name!r} has {sum(per_node)} GPUs free, but only {slots} node(s) "
                    f"with {res.gpus_per_node} free; the gang needs {res.nodes}",
                    "release a reservation, ask for fewer GPUs, or try another cluster",
                )
        res.pods = [
            Pod(
                name=mf.pod_name(res.id, rank),
                rank=rank,
                address=mf.pod_address(res.id, rank, self.opts.namespace),
                gpus=list(range(res.gpus_per_node)),
                handle=KubernetesHandle(namespace=self.opts.namespace, gang=gang),
            )
            for rank in range(res.nodes)
        ]
        self.store.save_reservation(res, **controller_identity())

    async def start(self, res: Reservation) -> None:
        gang = handle_of(res.pods[0], KubernetesHandle).gang
        objs = self.objects(res, gang)
        groups = [o for o in objs if o["kind"] not in ("Pod", "Service")]
        for obj in groups:  # the PodGroup must exist before its pods reach the scheduler
            await self.api.create(obj)
        await asyncio.gather(*(self.api.create(o) for o in objs if o not in groups))
        await self._wait_running(res)

    async def _wait_running(self, res: Reservation) -> None:
        """Every pod Running, or raise: NoCapacity with the scheduler's reasons, BackendError else."""
        t0 = time.monotonic()
        expected = {p.name for p in res.pods}
        while True:
            pods = {p["metadata"]["name"]: p for p in await self.api.pods(mf.selector(res.id))}
            missing = expected - pods.keys()
            if missing:
                raise BackendError(f"pod {sorted(missing)[0]} disappeared while the gang was starting")
            for name, p in pods.items():
                status = p.get("status", {})
                if status.get("phase") in ("Failed", "Succeeded"):
                    raise BackendError(
                        f"pod {name} ended while starting: {status.get('reason', '')} {status.get('message', '')}".strip()
                    )
                for cs in status.get("containerStatuses", []) or []:
                    reason = (cs.get("state", {}).get("waiting") or {}).get("reason")
                    if reason in IMAGE_ERRORS:
                        raise BackendError(
                            f"pod {name}: {reason}: {(cs['state']['waiting'].get('message') or '')[:300]}",
                            f"check options.image ({self.opts.image}) and image_pull_secrets",
                        )
            running = [p for p in pods.values() if _running(p)]
            if len(running) == len(expected):
                for pod in res.pods:
                    handle_of(pod, KubernetesHandle).node = pods[pod.name]["spec"].get("nodeName")
                    ip = pods[pod.name].get("status", {}).get("podIP")
                    if self.opts.rendezvous == "pod-ip" and ip:
                        pod.address = ip
                return
            elapsed = time.monotonic() - t0
            placed = [p for p in pods.values() if p.get("spec", {}).get("nodeName")]
            if len(placed) < len(expected) and elapsed > self.opts.schedule_timeout_s:
                why = await self._scheduling_reasons([n for n, p in pods.items() if p not in placed])
                raise NoCapacity(
                    f"cluster {self.cluster.name!r}: only {len(placed)}/{len(expected)} pods of the gang were "
                    f"placed within {self.opts.schedule_timeout_s:.0f}s; rolled back. Scheduler: {why}",
                    "release a reservation, ask for fewer GPUs, raise options.schedule_timeout_s, or try another cluster",
                )
            if elapsed > self.opts.start_timeout_s:
                raise BackendError(
                    f"cluster {self.cluster.name!r}: {len(running)}/{len(expected)} pods running after "
                    f"{self.opts.start_timeout_s:.0f}s (image pull?)",
                    "kubectl describe pod shows why; raise options.start_timeout_s for large images",
                )
            await asyncio.sleep(POLL_S)

    async def _scheduling_reasons(self, names: list[str]) -> str:
        reasons: list[str] = []
        for name in names[:3]:
            try:
                events = await self.api.events_for(name)
            except NeoError:
                continue
            for ev in events:
                if ev.get("reason") in ("FailedScheduling", "Unschedulable") or ev.get("type") == "Warning":
                    msg = f"{name}: {ev.get('message', '')}"
                    if msg not in reasons:
                        reasons.append(msg)
        return "; ".join(reasons[-3:]) or "pods pending with no scheduler event (gated by Kueue or a quota?)"

    # ------------------------------------------------------------------ pods
    async def open_stream(self, pod: Pod, argv: list[str]) -> ByteStream:
        from jupyter_neo.backends.kubernetes.execstream import ExecStream

        try:
            return await ExecStream.open(
                self.api.exec_client(),
                pod.name,
                handle_of(pod, KubernetesHandle).namespace,
                argv,
                "neo",
            )
        except NeoError:
            raise
        except Exception as exc:  # websocket_call wraps every failure as ApiException(status=0)
            reason = str(getattr(exc, "reason", None) or exc).strip()
            if "403" in reason or "Forbidden" in reason:
                raise BackendError(
                    f"cluster {self.cluster.name!r} namespace {self.opts.namespace!r}: exec into pod "
                    f"{pod.name} not allowed (pods/exec): {reason.splitlines()[0]}",
                    RBAC_HINT,
                ) from None
            raise BackendError(
                f"pod {pod.name}: exec failed: {reason.splitlines()[0] if reason else exc}",
                "is the pod running? kubectl get pod " + pod.name,
            ) from None

    def rendezvous_hint(self) -> str:
        return (
            "rendezvous: dns needs cluster DNS (CoreDNS/kube-dns) serving the headless Service's pod "
            "names; set options.rendezvous: pod-ip on clusters without it"
        )

    def agent_dir(self, pod: Pod) -> str:
        return mf.pod_root(self.opts, pod.name) + "/agent"

    def data_path(self, res: Reservation, use: DatasetUse) -> str | None:
        """``/data/<name>`` (``options.data_root``): the dataset's volume is mounted there in every pod."""
        return mf.data_mount_path(self.opts, use.name) if use.location is not None else None

    def workspace_dir(self, pod: Pod) -> str:
        return mf.pod_root(self.opts, pod.name) + "/ws"

    def python(self, pod: Pod) -> str:
        return self.opts.python

    # ------------------------------------------------------------------ release
    async def release(self, res: Reservation) -> None:
        """Delete pods, Service and gang objects by name and by label; verify none is left."""
        gang = (
            res.pods[0].handle.gang
            if res.pods and isinstance(res.pods[0].handle, KubernetesHandle)
            else "none"
        )
        sel = mf.selector(res.id)
        names = {p.name for p in res.pods} | {p["metadata"]["name"] for p in await self.api.pods(sel)}
        await asyncio.gather(*(self.api.delete_pod(n) for n in names))
        await self.api.delete_service(mf.service_name(res.id))
        kueue_version = "v1beta2"
        if gang == "kueue":
            kueue_version = await self.api.preferred_version(gangs.KUEUE_GROUP) or kueue_version
        for ref in gangs.owned_refs(gang, res, kueue_version):
            await self.api.delete_custom(ref)
        deadline = time.monotonic() + RELEASE_VERIFY_S
        while True:
            left = [p["metadata"]["name"] for p in await self.api.pods(sel)]
            left += [s["metadata"]["name"] for s in await self.api.services(sel)]
            if not left:
                return
            if time.monotonic() > deadline:
                raise BackendError(
                    f"cluster {self.cluster.name!r}: still present {RELEASE_VERIFY_S:.0f}s after delete: {', '.join(left)}",
                    f"kubectl delete pod,svc -l {sel} --grace-period=0 --force",
                )
            await asyncio.sleep(POLL_S)

    async def reconcile(self, known: dict[str, Reservation]) -> dict[str, str]:
        """Pods are the truth: report active gangs with a missing or ended pod; sweep released ones."""
        sel = f"{mf.MANAGED_BY}=jupyter-neo,{mf.L_CLUSTER}={mf.label_value(self.cluster.name)}"
        by_res: dict[str, dict[str, Obj]] = {}
        for p in await self.api.pods(sel):
            rid = p["metadata"].get("labels", {}).get(mf.L_RESERVATION, "")
            by_res.setdefault(rid, {})[p["metadata"]["name"]] = p
        lost: dict[str, str] = {}
        for rid, res in known.items():
            if res.state is ReservationState.RELEASED and rid in by_res:
                await self.release(res)
            if not res.live:
                continue
            present = by_res.get(rid, {})
            for pod in res.pods:
                reason = await self._pod_problem(pod.name, present.get(pod.name))
                if reason:
                    lost[rid] = reason
                    break
        return lost

    async def _pod_problem(self, name: str, obj: Obj | None) -> str | None:
        if obj is not None:
            status = obj.get("status", {})
            if status.get("phase") in ("Failed", "Succeeded"):
                return f"pod {name} {status.get('reason') or status['phase'].lower()}: {status.get('message', '')}".strip()
            if obj["metadata"].get("deletionTimestamp"):
                return f"pod {name} is being deleted"
            return None
        try:
            events = await self.api.events_for(name)
        except NeoError:
            events = []
        last = events[-1].get("message") if events else None
        return f"pod {name} was deleted" + (f" ({last})" if last else "")


def _running(pod: Obj) -> bool:
    status = pod.get("status", {})
    if status.get("phase") != "Running":
        return False
    statuses = status.get("containerStatuses") or []
    return bool(statuses) and all("running" in (cs.get("state") or {}) for cs in statuses)
