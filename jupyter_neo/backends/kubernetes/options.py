"""Kubernetes cluster settings (``Cluster.options``) and provider profiles.

A profile holds what differs between neoclouds and that users should not have to look up: the
GPU resource name, the node label carrying the GPU model, the RDMA resource, whether RDMA needs
``IPC_LOCK``, NCCL environment and a topology label. Values come from ``docs/kubernetes.md`` §2;
where a provider documents nothing (Lambda) the profile is the generic one and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jupyter_neo.errors import ConfigError
from jupyter_neo.model import Cluster

ProfileName = Literal["generic", "coreweave", "nebius", "lambda"]
GangName = Literal["auto", "kueue", "volcano", "coscheduling", "none"]
DEFAULT_IMAGE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"


@dataclass(frozen=True)
class Profile:
    """What a provider's nodes look like to a pod."""

    name: str
    gpu_resource: str = "nvidia.com/gpu"
    gpu_label: str = "nvidia.com/gpu.product"
    rdma_resource: str | None = None
    rdma_count: int = 1
    ipc_lock: bool = False
    nccl_env: dict[str, str] = field(default_factory=dict)
    topology_label: str | None = None
    gpu_taint: str | None = "nvidia.com/gpu"


PROFILES: dict[str, Profile] = {
    "generic": Profile(name="generic"),
    # rdma/ib is a boolean "schedule me on an IB node", not a device count (CoreWeave docs).
    "coreweave": Profile(
        name="coreweave",
        gpu_label="gpu.nvidia.com/class",
        rdma_resource="rdma/ib",
        ipc_lock=True,
        nccl_env={
            "NCCL_SOCKET_IFNAME": "eth0",
            "NCCL_IB_HCA": "ibp",
            "UCX_TLS": "tcp",
            "UCX_NET_DEVICES": "eth0",
        },
        topology_label="ib.coreweave.cloud/leafgroup",
    ),
    # Nebius's recipe is IPC_LOCK only: the IB devices come with the GPU cluster's node group.
    "nebius": Profile(
        name="nebius",
        gpu_label="nebius.com/gpu-name",
        ipc_lock=True,
        nccl_env={
            "NCCL_IB_HCA": "mlx5",
            "UCX_NET_DEVICES": ",".join(f"mlx5_{i}:1" for i in range(8)),
        },
        topology_label="topology.nebius.com/gpu-cluster-id",
    ),
    # Lambda publishes no IB resource names or labels: generic, discover the rest on the cluster.
    "lambda": Profile(name="lambda"),
}


# a volume name is a DNS-1123 label; "dshm" and "neo" are the pod's own volumes
VOLUME_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
RESERVED_VOLUMES = ("dshm", "neo")


class NfsSource(BaseModel):
    """An NFS export mounted directly by the kubelet (no PV/PVC needed)."""

    model_config = ConfigDict(extra="forbid")

    server: str = Field(min_length=1)
    path: str = Field(pattern=r"^/")


class VolumeSpec(BaseModel):
    """One entry of ``options.volumes``: a dataset, cache or toolchain mounted into every pod.

    Why a typed model and not raw Kubernetes ``volumes``/``volumeMounts``: users (and the dataset
    feature, which generates these entries) name *what* to mount and *where*; the backend owns the
    pod spec, so a mount can never clash with the agent's own volumes or drop ``readOnly``.
    Exactly one source: ``host_path`` (a directory on every node), ``pvc`` (a claim in the
    reservation's namespace, ReadOnlyMany/ReadWriteMany for gangs) or ``nfs``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=VOLUME_NAME, description="volume name (DNS label), unique per cluster")
    mount_path: str = Field(pattern=r"^/", description="absolute path inside the pod")
    read_only: bool = False
    host_path: str | None = Field(default=None, pattern=r"^/")
    pvc: str | None = Field(default=None, min_length=1, description="PersistentVolumeClaim name")
    nfs: NfsSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> VolumeSpec:
        given = [k for k in ("host_path", "pvc", "nfs") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"volume {self.name!r} needs exactly one of host_path, pvc, nfs (got {given or 'none'})"
            )
        if self.name in RESERVED_VOLUMES:
            raise ValueError(f"volume name {self.name!r} is reserved for the pod's own volumes")
        return self

    def volume(self) -> dict[str, Any]:
        """The pod-spec ``volumes`` entry."""
        if self.host_path is not None:
            return {"name": self.name, "hostPath": {"path": self.host_path, "type": "Directory"}}
        if self.pvc is not None:
            return {
                "name": self.name,
                "persistentVolumeClaim": {"claimName": self.pvc, "readOnly": self.read_only},
            }
        assert self.nfs is not None
        return {
            "name": self.name,
            "nfs": {"server": self.nfs.server, "path": self.nfs.path, "readOnly": self.read_only},
        }

    def mount(self) -> dict[str, Any]:
        """The container's ``volumeMounts`` entry."""
        return {"name": self.name, "mountPath": self.mount_path, "readOnly": self.read_only}


class KubeOptions(BaseModel):
    """``options:`` of a ``backend: kubernetes`` cluster."""

    model_config = ConfigDict(extra="forbid")

    kubeconfig: str | None = Field(
        default=None, description="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    context: str | None = Field(default=None, description="kubeconfig context (default: current)")
    namespace: str = "default"
    image: str = DEFAULT_IMAGE
    profile: ProfileName = "generic"
    gang: GangName = "auto"
    queue: str | None = Field(default=None, description="Kueue LocalQueue or Volcano Queue")
    scheduler_name: str | None = Field(default=None, description="override spec.schedulerName")
    gpu_product: str | None = Field(default=None, description="require this value of the profile's GPU label")
    cpu: str | None = None
    memory: str | None = None
    shm_size: str | None = None
    rdma: bool | None = Field(
        default=None, description="request the profile's RDMA resource (default: when it has one)"
    )
    rdma_resource: str | None = None
    multus_networks: str | None = Field(default=None, description="k8s.v1.cni.cncf.io/networks value")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    priority_class: str | None = None
    service_account: str | None = None
    image_pull_secrets: list[str] = Field(default_factory=list)
    spread: Literal["auto", "required", "preferred", "none"] = "auto"
    pod_root: str = Field(
        default="/tmp/neo",
        description="emptyDir mount holding agent + workspace; '{pod}' expands to the pod name",
    )
    data_root: str = Field(
        default="/data", pattern=r"^/", description="datasets are mounted at <data_root>/<name>"
    )
    python: str = "python3"
    rendezvous: Literal["dns", "pod-ip"] = Field(
        default="dns",
        description="how ranks find the leader: the headless Service's DNS name, or the pod IP "
        "(for clusters without cluster DNS for headless Services)",
    )
    volumes: list[VolumeSpec] = Field(
        default_factory=list, description="hostPath / PVC / NFS volumes mounted into every pod"
    )
    schedule_timeout_s: float = Field(default=300.0, gt=0)
    start_timeout_s: float = Field(default=900.0, gt=0)

    @model_validator(mode="after")
    def _volumes_do_not_clash(self) -> KubeOptions:
        names = [v.name for v in self.volumes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"volume name {sorted(dup)[0]!r} is used twice")
        own = ["/dev/shm", self.pod_root.split("{pod}")[0].rstrip("/") or "/"]
        for v in self.volumes:
            path = v.mount_path.rstrip("/") or "/"
            for taken in own:
                if path == taken or path.startswith(taken + "/") or taken.startswith(path + "/"):
                    raise ValueError(
                        f"volume {v.name!r}: mount_path {v.mount_path} overlaps {taken} (the pod's own)"
                    )
        return self

    def profile_spec(self) -> Profile:
        return PROFILES[self.profile]


def kube_options(cluster: Cluster) -> KubeOptions:
    """Validate ``cluster.options``; errors name the cluster and the bad key."""
    try:
        return KubeOptions.model_validate(cluster.options)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"cluster {cluster.name!r}: options.{loc}: {err['msg']}",
            "see docs/kubernetes.md for the kubernetes cluster options",
        ) from None
