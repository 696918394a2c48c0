"""The emulator's server: REST + exec websocket on 127.0.0.1, run on its own event loop thread."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from jupyter_neo.backends.local import kill_tree_under

Obj = dict[str, Any]
GROUP_VERSIONS = {
    "kueue.x-k8s.io": "v1beta2",
    "scheduling.volcano.sh": "v1beta1",
    "scheduling.x-k8s.io": "v1alpha1",
}
GPU = "nvidia.com/gpu"


@dataclass
class FakeNode:
    name: str
    gpus: int
    labels: dict[str, str] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def _match(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class Emulator:
    """Start with :meth:`start`; ``kubeconfig(path)`` writes a file pointing at it."""

    def __init__(
        self,
        nodes: list[FakeNode],
        groups: tuple[str, ...] = (),
        protocols: tuple[str, ...] = ("v5.channel.k8s.io", "v4.channel.k8s.io"),
        token: str = "emulator-token",
    ) -> None:
        self.nodes = nodes
        self.groups = groups
        self.protocols = protocols
        self.token = token
        self.pods: dict[tuple[str, str], Obj] = {}
        self.services: dict[tuple[str, str], Obj] = {}
        self.customs: dict[tuple[str, str, str, str], Obj] = {}
        self.events: list[Obj] = []
        self.requests: list[tuple[str, str]] = []
        self.exec_protocols: list[str] = []
        self.exec_log: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="k8s-emulator", daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Emulator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(middlewares=[self._auth])
        r = app.router
        r.add_get("/api", self.h_api)
        r.add_get("/apis", self.h_apis)
        r.add_get("/apis/", self.h_apis)
        r.add_get("/api/", self.h_api)
        r.add_get("/api/v1/nodes", self.h_nodes)
        r.add_get("/api/v1/pods", self.h_all_pods)
        r.add_route("*", "/api/v1/namespaces/{ns}/pods", self.h_pods)
        r.add_route("*", "/api/v1/namespaces/{ns}/pods/{name}", self.h_pod)
        r.add_get("/api/v1/namespaces/{ns}/pods/{name}/exec", self.h_exec)
        r.add_route("*", "/api/v1/namespaces/{ns}/services", self.h_services)
        r.add_route("*", "/api/v1/namespaces/{ns}/services/{name}", self.h_service)
        r.add_get("/api/v1/namespaces/{ns}/events", self.h_events)
        r.add_route("*", "/apis/{group}/{version}/namespaces/{ns}/{plural}", self.h_customs)
        r.add_route("*", "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}", self.h_custom)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        async def _stop() -> None:
            for key in list(self.pods):
                await self._delete_pod(*key)
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the emulator's loop (state is only touched there)."""

        async def run() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def kubeconfig(self, path: Path, namespace: str = "neo") -> Path:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emu", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "emu", "user": {"token": self.token}}],
            "contexts": [
                {"name": "emu", "context": {"cluster": "emu", "user": "emu", "namespace": namespace}}
            ],
            "current-context": "emu",
        }
        path.write_text(json.dumps(doc))
        return path

    # test helpers ---------------------------------------------------------
    def remaining(self) -> dict[str, list[str]]:
        """Every object still stored, by kind (for "nothing left behind" assertions)."""

        def collect() -> dict[str, list[str]]:
            return {
                "pods": sorted(n for _, n in self.pods),
                "services": sorted(n for _, n in self.services),
                "customs": sorted(f"{k[2]}/{k[3]}" for k in self.customs),
            }

        return dict(self.call(collect))

    def delete_pod_behind_back(self, ns: str, name: str) -> None:
        self.call(lambda: self._delete_pod(ns, name, reason="Preempted by a higher-priority pod"))

    # ------------------------------------------------------------------ middleware
    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    # ------------------------------------------------------------------ discovery, nodes
    async def h_api(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIVersions", "versions": ["v1"]})

    async def h_apis(self, request: web.Request) -> web.Response:
        groups = []
        for g in self.groups:
            v = GROUP_VERSIONS[g]
            gv = {"groupVersion": f"{g}/{v}", "version": v}
            groups.append({"name": g, "versions": [gv], "preferredVersion": gv})
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    def node_objects(self) -> list[Obj]:
        return [
            {
                "metadata": {"name": n.name, "labels": {"kubernetes.io/hostname": n.name, **n.labels}},
                "spec": {},
                "status": {"allocatable": {GPU: str(n.gpus), "cpu": "64"}, "capacity": {GPU: str(n.gpus)}},
            }
            for n in self.nodes
        ]

    async def h_nodes(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "NodeList", "apiVersion": "v1", "items": self.node_objects()})

    # ------------------------------------------------------------------ pods
    async def h_all_pods(self, request: web.Request) -> web.Response:
        items = [
            p
            for p in self.pods.values()
            if _match(p["metadata"].get("labels", {}), request.query.get("labelSelector"))
        ]
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "items": items})

    async def h_pods(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        if request.method == "GET":
            sel = request.query.get("labelSelector")
            items = [
                p
                for (pns, _), p in self.pods.items()
                if pns == ns and _match(p["metadata"].get("labels", {}), sel)
            ]
            return web.json_response({"kind": "PodList", "apiVersion": "v1", "items": items})
        if request.method != "POST":
            return _status(405, "MethodNotAllowed", request.method)
        body = await request.json()
        name = body["metadata"]["name"]
        if (ns, name) in self.pods:
            return _status(409, "AlreadyExists", f'pods "{name}" already exists')
        obj = copy.deepcopy(body)
        obj["metadata"].update(
            namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion="1"
        )
        obj["status"] = {"phase": "Pending", "conditions": []}
        self.pods[(ns, name)] = obj
        self._schedule()
        return web.json_response(obj, status=201)

    async def h_pod(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        obj = self.pods.get((ns, name))
        if obj is None:
            return _status(404, "NotFound", f'pods "{name}" not found')
        if request.method == "GET":
            return web.json_response(obj)
        if request.method == "DELETE":
            await self._delete_pod(ns, name)
            return web.json_response(obj)
        return _status(405, "MethodNotAllowed", request.method)

    async def _delete_pod(self, ns: str, name: str, reason: str = "Stopping container neo") -> None:
        obj = self.pods.pop((ns, name), None)
        if obj is None:
            return
        self._event(ns, name, "Normal", "Killing", reason)
        for root in self._emptydirs(obj):
            await asyncio.to_thread(kill_tree_under, root)
            await asyncio.to_thread(shutil.rmtree, root, True)
        self._unlink_host_paths(obj)
        self._schedule()

    @staticmethod
    def _host_paths(pod: Obj) -> list[tuple[Path, str]]:
        """hostPath mounts as (mountPath, host directory): the emulator links the one to the other,
        so a process of the pod finds the node's directory at the path the pod spec names."""
        hosts = {v["name"]: v["hostPath"]["path"] for v in pod["spec"].get("volumes", []) if "hostPath" in v}
        return [
            (Path(m["mountPath"]), hosts[m["name"]])
            for c in pod["spec"]["containers"]
            for m in c.get("volumeMounts", [])
            if m["name"] in hosts
        ]

    def _unlink_host_paths(self, pod: Obj) -> None:
        """Remove a pod's hostPath links that no other pod still mounts."""
        others = {m for p in self.pods.values() if p is not pod for m, _ in self._host_paths(p)}
        for mount, _host in self._host_paths(pod):
            if mount not in others and mount.is_symlink():
                mount.unlink()

    @staticmethod
    def _emptydirs(pod: Obj) -> list[Path]:
        """Host directories standing in for the pod's emptyDir volumes (not /dev/shm)."""
        empties = {v["name"] for v in pod["spec"].get("volumes", []) if "emptyDir" in v}
        return [
            Path(m["mountPath"])
            for c in pod["spec"]["containers"]
            for m in c.get("volumeMounts", [])
            if m["name"] in empties and m["mountPath"] != "/dev/shm"
        ]

    def _event(self, ns: str, name: str, type_: str, reason: str, message: str) -> None:
        for ev in self.events:
            if ev["involvedObject"]["name"] == name and ev["reason"] == reason and ev["message"] == message:
                ev["count"] += 1
                return
        self.events.append(
            {
                "metadata": {"name": f"{name}.{uuid.uuid4().hex[:8]}", "namespace": ns},
                "involvedObject": {"kind": "Pod", "name": name, "namespace": ns},
                "type": type_,
                "reason": reason,
                "message": message,
                "count": 1,
                "lastTimestamp": _now(),
            }
        )

    async def h_events(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        fs = request.query.get("fieldSelector", "")
        want = fs.split("=", 1)[1] if fs.startswith("involvedObject.name=") else None
        items = [
            e
            for e in self.events
            if e["metadata"]["namespace"] == ns and (want is None or e["involvedObject"]["name"] == want)
        ]
        return web.json_response({"kind": "EventList", "apiVersion": "v1", "items": items})

    # ------------------------------------------------------------------ scheduler
    def _gpu_request(self, pod: Obj) -> int:
        total = 0
        for c in pod["spec"]["containers"]:
            res = c.get("resources", {})
            total += int((res.get("requests") or res.get("limits") or {}).get(GPU, 0))
        return total

    def _free(self) -> dict[str, int]:
        free = {n.name: n.gpus for n in self.nodes}
        for p in self.pods.values():
            node = p["spec"].get("nodeName")
            if node in free:
                free[node] -= self._gpu_request(p)
        return free

    def _fits(self, pod: Obj, node: FakeNode, free: dict[str, int], extra: list[tuple[Obj, str]]) -> bool:
        if free[node.name] < self._gpu_request(pod):
            return False
        labels = {"kubernetes.io/hostname": node.name, **node.labels}
        if any(labels.get(k) != v for k, v in (pod["spec"].get("nodeSelector") or {}).items()):
            return False
        terms = ((pod["spec"].get("affinity") or {}).get("podAntiAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution", []
        )
        placed = [(p, p["spec"].get("nodeName")) for p in self.pods.values()] + extra
        for term in terms:
            want = term["labelSelector"]["matchLabels"]
            for other, where in placed:
                if where == node.name and all(
                    other["metadata"]["labels"].get(k) == v for k, v in want.items()
                ):
                    return False
        return True

    def _group_of(self, pod: Obj) -> tuple[str, str, int] | None:
        """(group, name, minMember) when the pod belongs to an existing PodGroup."""
        meta = pod["metadata"]
        ns = meta["namespace"]
        for key, group in (
            (meta.get("annotations", {}).get("scheduling.k8s.io/group-name"), "scheduling.volcano.sh"),
            (meta.get("labels", {}).get("scheduling.x-k8s.io/pod-group"), "scheduling.x-k8s.io"),
        ):
            if key:
                pg = self.customs.get((group, ns, "podgroups", key))
                return (group, key, int(pg["spec"]["minMember"]) if pg else 10**9)
        return None

    def _schedule(self) -> None:
        """Bind pending pods: singly, or a whole PodGroup at once when all of it fits."""
        pending = [p for p in self.pods.values() if not p["spec"].get("nodeName")]
        done: set[str] = set()
        for pod in pending:
            if pod["metadata"]["name"] in done:
                continue
            group = self._group_of(pod)
            members = [pod]
            if group is not None:
                members = [p for p in pending if self._group_of(p) == group]
                done.update(p["metadata"]["name"] for p in members)
                if len(members) < group[2]:
                    for m in members:
                        self._unschedulable(m, f"pod group {group[1]} has {len(members)}/{group[2]} members")
                    continue
            plan = self._plan(members)
            if plan is None:
                for m in members:
                    self._unschedulable(m, self._why(m))
                continue
            for m, node in plan:
                self._bind(m, node)

    def _plan(self, members: list[Obj]) -> list[tuple[Obj, str]] | None:
        free = self._free()
        plan: list[tuple[Obj, str]] = []
        for m in members:
            node = next((n for n in self.nodes if self._fits(m, n, free, plan)), None)
            if node is None:
                return None
            free[node.name] -= self._gpu_request(m)
            plan.append((m, node.name))
        return plan

    def _why(self, pod: Obj) -> str:
        free = self._free()
        short = sum(1 for n in self.nodes if free[n.name] < self._gpu_request(pod))
        other = len(self.nodes) - short
        parts = [f"{short} Insufficient {GPU}"] if short else []
        if other:
            parts.append(f"{other} node(s) didn't match pod anti-affinity rules or node selector")
        return f"0/{len(self.nodes)} nodes are available: {', '.join(parts)}."

    def _unschedulable(self, pod: Obj, message: str) -> None:
        pod["status"]["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        ]
        self._event(
            pod["metadata"]["namespace"], pod["metadata"]["name"], "Warning", "FailedScheduling", message
        )

    def _bind(self, pod: Obj, node: str) -> None:
        pod["spec"]["nodeName"] = node
        for root in self._emptydirs(pod):
            root.mkdir(parents=True, exist_ok=True)
        for mount, host in self._host_paths(pod):
            if not mount.is_symlink():
                mount.parent.mkdir(parents=True, exist_ok=True)
                mount.symlink_to(host, target_is_directory=True)
        pod["status"] = {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": _now(),
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "ready": True,
                    "restartCount": 0,
                    "image": c["image"],
                    "imageID": "",
                    "state": {"running": {"startedAt": _now()}},
                }
                for c in pod["spec"]["containers"]
            ],
        }
        self._event(
            pod["metadata"]["namespace"],
            pod["metadata"]["name"],
            "Normal",
            "Scheduled",
            f"assigned to {node}",
        )

    # ------------------------------------------------------------------ services, custom objects
    async def h_services(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        if request.method == "GET":
            sel = request.query.get("labelSelector")
            items = [
                s
                for (sns, _), s in self.services.items()
                if sns == ns and _match(s["metadata"].get("labels", {}), sel)
            ]
            return web.json_response({"kind": "ServiceList", "apiVersion": "v1", "items": items})
        body = await request.json()
        name = body["metadata"]["name"]
        if (ns, name) in self.services:
            return _status(409, "AlreadyExists", f'services "{name}" already exists')
        body["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now())
        self.services[(ns, name)] = body
        return web.json_response(body, status=201)

    async def h_service(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        obj = self.services.get(key)
        if obj is None:
            return _status(404, "NotFound", f'services "{key[1]}" not found')
        if request.method == "DELETE":
            del self.services[key]
        return web.json_response(obj)

    def _custom_known(self, request: web.Request) -> bool:
        group = request.match_info["group"]
        return group in self.groups and GROUP_VERSIONS[group] == request.match_info["version"]

    async def h_customs(self, request: web.Request) -> web.Response:
        if not self._custom_known(request):
            return _status(404, "NotFound", "the server could not find the requested resource")
        group, ns, plural = (
            request.match_info["group"],
            request.match_info["ns"],
            request.match_info["plural"],
        )
        if request.method == "GET":
            if group == "kueue.x-k8s.io" and plural == "localqueues":
                return web.json_response({"items": [{"metadata": {"name": "team-queue", "namespace": ns}}]})
            items = [o for (g, n, p, _), o in self.customs.items() if (g, n, p) == (group, ns, plural)]
            return web.json_response({"items": items})
        body = await request.json()
        name = body["metadata"]["name"]
        key = (group, ns, plural, name)
        if key in self.customs:
            return _status(409, "AlreadyExists", f'{plural} "{name}" already exists')
        body["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now())
        self.customs[key] = body
        self._schedule()
        return web.json_response(body, status=201)

    async def h_custom(self, request: web.Request) -> web.Response:
        if not self._custom_known(request):
            return _status(404, "NotFound", "the server could not find the requested resource")
        m = request.match_info
        key = (m["group"], m["ns"], m["plural"], m["name"])
        obj = self.customs.get(key)
        if obj is None:
            return _status(404, "NotFound", f'{m["plural"]} "{m["name"]}" not found')
        if request.method == "DELETE":
            del self.customs[key]
        return web.json_response(obj)

    # ------------------------------------------------------------------ exec
    async def h_exec(self, request: web.Request) -> web.StreamResponse:
        """channel.k8s.io framing: first byte of each binary message is the channel."""
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = self.pods.get((ns, name))
        if pod is None:
            return _status(404, "NotFound", f'pods "{name}" not found')
        if pod["status"].get("phase") != "Running":
            return _status(400, "BadRequest", f"pod {name} is not running")
        argv = request.query.getall("command")
        ws = web.WebSocketResponse(protocols=self.protocols, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            return _status(400, "BadRequest", "exec needs a websocket upgrade with a channel.k8s.io protocol")
        await ws.prepare(request)
        self.exec_protocols.append(ws.ws_protocol or "")
        container = pod["spec"]["containers"][0]
        env = dict(os.environ)
        env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["HOSTNAME"] = name
        roots = self._emptydirs(pod)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=str(roots[0]) if roots else None,
            )
        except OSError as exc:
            await ws.send_bytes(b"\x03" + json.dumps({"status": "Failure", "message": str(exc)}).encode())
            await ws.close()
            return ws
        assert proc.stdin and proc.stdout and proc.stderr

        stats = {"pod": name, "in": 0, "out": 0, "rc": None}
        self.exec_log.append(stats)

        async def pump(src: asyncio.StreamReader, channel: bytes) -> None:
            while chunk := await src.read(65536):
                stats["out"] += len(chunk)
                await ws.send_bytes(channel + chunk)

        async def feed() -> None:
            async for msg in ws:
                if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                    break
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                if not data:
                    continue
                if data[0] == 0:
                    stats["in"] += len(data) - 1
                    proc.stdin.write(data[1:])
                    with contextlib.suppress(ConnectionError):
                        await proc.stdin.drain()
                elif data[0] == 255 and data[1:2] == b"\x00" and ws.ws_protocol == "v5.channel.k8s.io":
                    proc.stdin.close()
            with contextlib.suppress(Exception):
                proc.stdin.close()

        feeder = asyncio.ensure_future(feed())
        await asyncio.gather(pump(proc.stdout, b"\x01"), pump(proc.stderr, b"\x02"), return_exceptions=True)
        try:
            code = await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            code = await proc.wait()
        stats["rc"] = code
        status: Obj = {"metadata": {}, "status": "Success"}
        if code:
            status = {
                "metadata": {},
                "status": "Failure",
                "reason": "NonZeroExitCode",
                "message": f"command terminated with non-zero exit code: {code}",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        with contextlib.suppress(Exception):
            await ws.send_bytes(b"\x03" + json.dumps(status).encode())
            await ws.close()
        feeder.cancel()
        return ws
