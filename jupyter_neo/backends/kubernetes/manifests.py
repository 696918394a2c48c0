"""Pure functions from a reservation to the Kubernetes objects that hold it.

Why plain pods and not an indexed Job or JobSet: a reservation is a set of *warm* slots that live
until released, not a batch job that completes. Plain pods (a) need no controller beyond the
scheduler, so they work on every cluster and under every gang mechanism (Kueue's plain-pod groups,
Volcano and coscheduling PodGroups key off pod labels/annotations), (b) give us stable, chosen names
(``neo-<id>-<rank>``) and hostnames without the Job controller's ``<job>-<index>-<suffix>``, and
(c) are never re-created behind our back: a Job would replace a failed pod on another node, which
for a gang means a silently changed topology; we would rather report it degraded. The price is
that we write the rollback ourselves, which the all-or-nothing requirement demands anyway.

Nothing here talks to a cluster: ``neo reserve --dry-run`` prints exactly these objects.
"""

from __future__ import annotations

import re
from typing import Any

from jupyter_neo.backends.kubernetes.options import KubeOptions, NfsSource, VolumeSpec
from jupyter_neo.model import Reservation

Obj = dict[str, Any]

LABEL_PREFIX = "neo.jupyter.org"
MANAGED_BY = "app.kubernetes.io/managed-by"
L_RESERVATION = f"{LABEL_PREFIX}/reservation"
L_CLUSTER = f"{LABEL_PREFIX}/cluster"
L_OWNER = f"{LABEL_PREFIX}/owner"
L_RANK = f"{LABEL_PREFIX}/rank"
A_IDLE_TTL = f"{LABEL_PREFIX}/idle-ttl-seconds"
A_NODES = f"{LABEL_PREFIX}/gang-size"
RDZV_PORT = 29500
# PID 1 of the warm container: a fixed program that waits for SIGTERM. Needs only python3, which
# the agent needs anyway (``sleep infinity`` is missing from some busybox builds).
WARM_COMMAND = [
    "python3",
    "-c",
    "import signal,sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); signal.pause()",
]


def service_name(rid: str) -> str:
    return f"neo-{rid}"


def pod_name(rid: str, rank: int) -> str:
    return f"neo-{rid}-{rank}"


def pod_root(opts: KubeOptions, name: str) -> str:
    return opts.pod_root.replace("{pod}", name)


def pod_address(rid: str, rank: int, namespace: str) -> str:
    """Stable DNS name through the headless Service (resolvable before readiness)."""
    return f"{pod_name(rid, rank)}.{service_name(rid)}.{namespace}.svc"


def label_value(text: str) -> str:
    """A string made safe for a label value (63 chars, alnum at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("-._")
    return cleaned or "unknown"


def selector(rid: str) -> str:
    return f"{L_RESERVATION}={rid}"


def common_labels(cluster: str, res: Reservation) -> dict[str, str]:
    return {
        MANAGED_BY: "jupyter-neo",
        L_RESERVATION: res.id,
        L_CLUSTER: label_value(cluster),
        L_OWNER: label_value(res.owner or "unknown"),
    }


def data_mount_path(opts: KubeOptions, name: str) -> str:
    return f"{opts.data_root.rstrip('/')}/{name}"


def dataset_volumes(opts: KubeOptions, res: Reservation) -> list[VolumeSpec]:
    """One volume per dataset the cluster holds, at ``<data_root>/<name>`` (``/data/<name>``),
    read-only unless the request said ``NAME:rw``.

    A ``path`` location is not a Kubernetes volume (the configuration check refuses it here).
    """
    out = []
    for use in res.datasets:
        loc = use.location
        if loc is None or loc.kind == "path":
            continue
        out.append(
            VolumeSpec(
                name=f"neo-data-{use.name}",
                mount_path=data_mount_path(opts, use.name),
                read_only=use.read_only,
                host_path=loc.host_path,
                pvc=loc.pvc,
                nfs=NfsSource(server=loc.nfs.server, path=loc.nfs.path) if loc.nfs else None,
            )
        )
    return out


def whole_nodes(res: Reservation, node_gpus: int) -> bool:
    return res.gpus_per_node >= node_gpus


def build_objects(
    cluster: str,
    opts: KubeOptions,
    res: Reservation,
    *,
    gang: str,
    node_gpus: int,
    env: dict[str, str] | None = None,
) -> list[Obj]:
    """Every object of the reservation in creation order: gang object, Service, pods by rank."""
    from jupyter_neo.backends.kubernetes import gang as gangs

    objs: list[Obj] = []
    group = gangs.group_object(gang, opts, res, common_labels(cluster, res))
    if group is not None:
        objs.append(group)
    objs.append(service(cluster, opts, res))
    for rank in range(res.nodes):
        objs.append(pod(cluster, opts, res, rank, gang=gang, node_gpus=node_gpus, env=env or {}))
    return objs


def service(cluster: str, opts: KubeOptions, res: Reservation) -> Obj:
    """Headless, publishing not-ready addresses: rank 0's name resolves before readiness."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(res.id),
            "namespace": opts.namespace,
            "labels": common_labels(cluster, res),
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {L_RESERVATION: res.id},
            "ports": [{"name": "rdzv", "port": RDZV_PORT, "targetPort": RDZV_PORT, "protocol": "TCP"}],
        },
    }


def pod(
    cluster: str,
    opts: KubeOptions,
    res: Reservation,
    rank: int,
    *,
    gang: str,
    node_gpus: int,
    env: dict[str, str],
) -> Obj:
    from jupyter_neo.backends.kubernetes import gang as gangs

    prof = opts.profile_spec()
    name = pod_name(res.id, rank)
    gpu_resource = prof.gpu_resource
    limits: dict[str, str] = {gpu_resource: str(res.gpus_per_node)}
    requests: dict[str, str] = {gpu_resource: str(res.gpus_per_node)}
    rdma_resource = opts.rdma_resource or prof.rdma_resource
    if rdma_resource and opts.rdma is not False:
        limits[rdma_resource] = requests[rdma_resource] = str(prof.rdma_count)
    if opts.cpu:
        requests["cpu"] = opts.cpu
    if opts.memory:
        requests["memory"] = limits["memory"] = opts.memory
    labels = {**common_labels(cluster, res), L_RANK: str(rank)}
    annotations = {A_IDLE_TTL: str(int(res.idle_ttl or 0)), A_NODES: str(res.nodes)}
    if opts.multus_networks:
        annotations["k8s.v1.cni.cncf.io/networks"] = opts.multus_networks
    root = pod_root(opts, name)
    container_env = [
        {"name": k, "value": v}
        for k, v in {
            **prof.nccl_env,
            **env,
            "NEO_RESERVATION": res.id,
            "NEO_NODE_RANK": str(rank),
            "NEO_NNODES": str(res.nodes),
            "NEO_MASTER_ADDR": pod_address(res.id, 0, opts.namespace),
            "NEO_MASTER_PORT": str(RDZV_PORT),
        }.items()
    ]
    security: Obj = {"capabilities": {"add": ["IPC_LOCK"]}} if prof.ipc_lock else {}
    shm: Obj = {"medium": "Memory"}
    if opts.shm_size:
        shm["sizeLimit"] = opts.shm_size
    container: Obj = {
        "name": "neo",
        "image": opts.image,
        "command": WARM_COMMAND,
        "env": container_env,
        "ports": [{"name": "rdzv", "containerPort": RDZV_PORT, "protocol": "TCP"}],
        "resources": {"limits": limits, "requests": requests},
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "neo", "mountPath": root},
            *(v.mount() for v in opts.volumes),
            *(v.mount() for v in dataset_volumes(opts, res)),
        ],
    }
    if security:
        container["securityContext"] = security
    node_selector = dict(opts.node_selector)
    if opts.gpu_product:
        node_selector[prof.gpu_label] = opts.gpu_product
    tolerations = list(opts.tolerations)
    if prof.gpu_taint and not any(t.get("key") == prof.gpu_taint for t in tolerations):
        tolerations.append({"key": prof.gpu_taint, "operator": "Exists", "effect": "NoSchedule"})
    spec: Obj = {
        "hostname": name,
        "subdomain": service_name(res.id),
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [
            {"name": "dshm", "emptyDir": shm},
            {"name": "neo", "emptyDir": {}},
            *(v.volume() for v in opts.volumes),
            *(v.volume() for v in dataset_volumes(opts, res)),
        ],
        "tolerations": tolerations,
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    affinity = spread_affinity(opts, res, node_gpus)
    if affinity:
        spec["affinity"] = affinity
    if opts.priority_class:
        spec["priorityClassName"] = opts.priority_class
    if opts.service_account:
        spec["serviceAccountName"] = opts.service_account
    if opts.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in opts.image_pull_secrets]
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": opts.namespace, "labels": labels, "annotations": annotations},
        "spec": spec,
    }
    gangs.decorate_pod(gang, opts, res, obj)
    return obj


def spread_affinity(opts: KubeOptions, res: Reservation, node_gpus: int) -> Obj | None:
    """One pod per node. Required when each pod takes whole nodes (two would never fit anyway and
    the scheduler learns it early); preferred otherwise, so small gangs can share a node."""
    mode = opts.spread
    if mode == "auto":
        mode = "required" if whole_nodes(res, node_gpus) and res.nodes > 1 else "preferred"
    if mode == "none" or res.nodes == 1:
        return None
    term = {
        "labelSelector": {"matchLabels": {L_RESERVATION: res.id}},
        "topologyKey": "kubernetes.io/hostname",
    }
    if mode == "required":
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]
        }
    }
