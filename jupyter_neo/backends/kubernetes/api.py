"""The official ``kubernetes`` client, used off the event loop and returning plain dicts.

The client is synchronous; every call runs in a worker thread (``asyncio.to_thread``). Responses
are read raw (``_preload_content=False``) and parsed as JSON: the backend works with the same
dicts it builds in :mod:`.manifests`, and the emulator and dry-run see identical shapes.
Errors become :mod:`jupyter_neo.errors` types whose hints say what to fix (RBAC, context, VPN).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from jupyter_neo.backends.kubernetes.gang import CustomRef
from jupyter_neo.backends.kubernetes.options import KubeOptions
from jupyter_neo.errors import BackendError, ConfigError, NotFound

Obj = dict[str, Any]
TRANSIENT_RETRY_S = 5.0
RBAC_HINT = "ask an admin to apply server/k8s/rbac.yaml to this namespace (see docs/kubernetes.md)"


class KubeApi:
    """One kubeconfig context and namespace."""

    def __init__(self, opts: KubeOptions, cluster: str) -> None:
        from kubernetes import client, config

        self.opts = opts
        self.ns = opts.namespace
        self.cluster = cluster
        self.configuration = client.Configuration()
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=opts.kubeconfig, context=opts.context, client_configuration=self.configuration
            )
        except (config.ConfigException, OSError, TypeError) as exc:
            raise ConfigError(
                f"cluster {cluster!r}: cannot load kubeconfig context {opts.context or '(current)'}: {exc}",
                "check options.kubeconfig / options.context (kubectl config get-contexts)",
            ) from None
        self.client = client.ApiClient(self.configuration)
        self.core = client.CoreV1Api(self.client)
        self.custom = client.CustomObjectsApi(self.client)

    def exec_client(self) -> Any:
        """A CoreV1Api on a private ApiClient: ``kubernetes.stream.stream`` swaps the client's
        ``call_api`` while it opens a websocket, so sharing one with REST calls races."""
        from kubernetes import client

        return client.CoreV1Api(client.ApiClient(self.configuration))

    async def call(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run ``fn`` in a thread; parse its raw JSON body; translate failures."""
        return await asyncio.to_thread(self._call_sync, what, fn, *args, **kw)

    def _call_sync(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        deadline = time.monotonic() + TRANSIENT_RETRY_S
        try:
            while True:
                try:
                    # raw bodies: 1.20 answers a Service DELETE with a Status that client 37.x
                    # cannot deserialize into V1Service; we never need the typed models anyway
                    resp = fn(*args, _preload_content=False, **kw)
                    break
                except ApiException as exc:
                    if not transient(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            data = resp.data
            return json.loads(data) if data else {}
        except ApiException as exc:
            raise translate(exc, what, self.cluster, self.ns) from None
        except (HTTPError, OSError) as exc:
            raise BackendError(
                f"cluster {self.cluster!r}: cannot reach the API server ({what}): {exc}",
                "check the kubeconfig context, VPN and `kubectl get pods` from this machine",
            ) from None

    # ------------------------------------------------------------------ reads
    async def api_groups(self) -> set[str]:
        from kubernetes import client

        doc = await self.call("discovery", client.ApisApi(self.client).get_api_versions)
        return {g["name"] for g in doc.get("groups", [])}

    async def preferred_version(self, group: str) -> str | None:
        from kubernetes import client

        doc = await self.call("discovery", client.ApisApi(self.client).get_api_versions)
        for g in doc.get("groups", []):
            if g["name"] == group:
                return str(g.get("preferredVersion", {}).get("version") or g["versions"][0]["version"])
        return None

    async def pods(self, label_selector: str) -> list[Obj]:
        doc = await self.call(
            "list pods", self.core.list_namespaced_pod, self.ns, label_selector=label_selector
        )
        return list(doc.get("items", []))

    async def events_for(self, name: str) -> list[Obj]:
        doc = await self.call(
            "list events",
            self.core.list_namespaced_event,
            self.ns,
            field_selector=f"involvedObject.name={name}",
        )
        return list(doc.get("items", []))

    async def nodes(self) -> list[Obj]:
        doc = await self.call("list nodes", self.core.list_node)
        return list(doc.get("items", []))

    async def all_pods(self) -> list[Obj]:
        doc = await self.call("list pods", self.core.list_pod_for_all_namespaces)
        return list(doc.get("items", []))

    async def custom_list(self, group: str, version: str, plural: str) -> list[Obj]:
        doc = await self.call(
            f"list {plural}.{group}",
            self.custom.list_namespaced_custom_object,
            group,
            version,
            self.ns,
            plural,
        )
        return list(doc.get("items", []))

    async def services(self, label_selector: str) -> list[Obj]:
        doc = await self.call(
            "list services", self.core.list_namespaced_service, self.ns, label_selector=label_selector
        )
        return list(doc.get("items", []))

    # ------------------------------------------------------------------ writes
    async def create(self, obj: Obj) -> Obj:
        kind = obj["kind"]
        what = f"create {kind} {obj['metadata']['name']}"
        if kind == "Pod":
            return dict(await self.call(what, self.core.create_namespaced_pod, self.ns, obj))
        if kind == "Service":
            return dict(await self.call(what, self.core.create_namespaced_service, self.ns, obj))
        group, version = obj["apiVersion"].split("/")
        plural = kind.lower() + "s"
        return dict(
            await self.call(
                what, self.custom.create_namespaced_custom_object, group, version, self.ns, plural, obj
            )
        )

    async def delete_pod(self, name: str) -> None:
        await self._ignore_missing(
            self.call(
                f"delete pod {name}", self.core.delete_namespaced_pod, name, self.ns, grace_period_seconds=0
            )
        )

    async def delete_service(self, name: str) -> None:
        await self._ignore_missing(
            self.call(f"delete service {name}", self.core.delete_namespaced_service, name, self.ns)
        )

    async def delete_custom(self, ref: CustomRef) -> None:
        await self._ignore_missing(
            self.call(
                f"delete {ref.plural}.{ref.group} {ref.name}",
                self.custom.delete_namespaced_custom_object,
                ref.group,
                ref.version,
                self.ns,
                ref.plural,
                ref.name,
            )
        )

    @staticmethod
    async def _ignore_missing(coro: Any) -> None:
        try:
            await coro
        except NotFound:
            pass


def transient(exc: Any) -> bool:
    """An answer that means "ask again in a moment", not "no".

    Seen on a real 1.20 apiserver: a pod created within ~50 ms of its namespace gets 500 "No API
    token found for service account default" (the token controller has not run yet); newer
    versions answer 403 "serviceaccount default not found" in the same window. 429/503 are
    the apiserver's own "retry later".
    """
    status = int(getattr(exc, "status", 0) or 0)
    body = str(getattr(exc, "body", "") or "")
    if status in (429, 503):
        return True
    if status == 500 and "No API token found for service account" in body:
        return True
    return status == 403 and "serviceaccount" in body and "not found" in body


def translate(exc: Any, what: str, cluster: str, ns: str) -> Exception:
    """An ApiException as a NeoError a user can act on."""
    status = int(getattr(exc, "status", 0) or 0)
    try:
        message = json.loads(exc.body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        message = str(getattr(exc, "reason", "") or exc)
    where = f"cluster {cluster!r} namespace {ns!r}"
    if status == 404:
        return NotFound(f"{where}: {what}: not found ({message})")
    if status == 401:
        return BackendError(
            f"cluster {cluster!r}: the API server rejected the credentials ({message or 'Unauthorized'})",
            "the kubeconfig's token or certificate is expired or wrong: log in again (refresh the kubeconfig)",
        )
    if status == 403:
        return BackendError(f"{where}: {what}: not allowed ({message})", RBAC_HINT)
    if status == 409:
        return BackendError(
            f"{where}: {what}: already exists ({message})", "release the old reservation first"
        )
    if status == 422:
        return BackendError(f"{where}: {what}: rejected as invalid ({message})", "check the cluster options")
    return BackendError(f"{where}: {what} failed ({status}): {message}")
