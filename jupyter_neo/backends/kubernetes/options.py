"""Kubernetes cluster settings (``Cluster.options``) and provider profiles.

A profile holds what differs between neoclouds and that users should not have to look up: the
GPU resource name, the node label carrying the GPU model, the RDMA resource, whether RDMA needs
``IPC_LOCK``, NCCL environment and a topology label. Values come from ``docs/kubernetes.md`` §2;
where a provider documents nothing (Lambda) the profile is the generic one and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    python: str = "python3"
    rendezvous: Literal["dns", "pod-ip"] = Field(
        default="dns",
        description="how ranks find the leader: the headless Service's DNS name, or the pod IP "
        "(for clusters without cluster DNS for headless Services)",
    )
    schedule_timeout_s: float = Field(default=300.0, gt=0)
    start_timeout_s: float = Field(default=900.0, gt=0)

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
