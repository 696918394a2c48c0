"""Gang mechanisms: what each scheduler needs on the pods, and which one a cluster has.

Whatever the mechanism, the backend also waits for every pod to run and deletes them all on
timeout: the gang scheduler prevents partial *binding*, the client-side wait prevents a partial
*reservation* (and is the whole mechanism when ``none``). See docs/kubernetes.md §1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jupyter_neo.backends.kubernetes.options import KubeOptions
from jupyter_neo.model import Reservation

MECHANISMS = ("kueue", "volcano", "coscheduling", "none")
KUEUE_GROUP = "kueue.x-k8s.io"
VOLCANO_GROUP = "scheduling.volcano.sh"
COSCHED_GROUP = "scheduling.x-k8s.io"


@dataclass(frozen=True)
class CustomRef:
    """Where a custom object lives, for CustomObjectsApi calls."""

    group: str
    version: str
    plural: str
    name: str


def group_name(res: Reservation) -> str:
    return f"neo-{res.id}"


def detect(groups: set[str], kueue_queues: list[str], configured_queue: str | None) -> str:
    """Pick the gang mechanism from the API groups served (``GET /apis``).

    Kueue only counts when a LocalQueue is usable (a configured one, or any in the namespace):
    the CRD alone does not mean pods in this namespace are managed.
    """
    if KUEUE_GROUP in groups and (configured_queue or kueue_queues):
        return "kueue"
    if VOLCANO_GROUP in groups:
        return "volcano"
    if COSCHED_GROUP in groups:
        return "coscheduling"
    return "none"


def group_object(
    gang: str, opts: KubeOptions, res: Reservation, labels: dict[str, str]
) -> dict[str, Any] | None:
    """The PodGroup to create before the pods (Volcano, coscheduling); None otherwise."""
    meta = {"name": group_name(res), "namespace": opts.namespace, "labels": labels}
    prof = opts.profile_spec()
    min_resources = {prof.gpu_resource: str(res.gpus)}
    if gang == "volcano":
        spec: dict[str, Any] = {"minMember": res.nodes, "minResources": min_resources}
        if opts.queue:
            spec["queue"] = opts.queue
        if opts.priority_class:
            spec["priorityClassName"] = opts.priority_class
        return {"apiVersion": f"{VOLCANO_GROUP}/v1beta1", "kind": "PodGroup", "metadata": meta, "spec": spec}
    if gang == "coscheduling":
        return {
            "apiVersion": f"{COSCHED_GROUP}/v1alpha1",
            "kind": "PodGroup",
            "metadata": meta,
            "spec": {
                "minMember": res.nodes,
                "minResources": min_resources,
                "scheduleTimeoutSeconds": int(opts.schedule_timeout_s),
            },
        }
    return None


def decorate_pod(gang: str, opts: KubeOptions, res: Reservation, pod: dict[str, Any]) -> None:
    """Add the labels, annotations and schedulerName the mechanism keys off (in place)."""
    meta, spec = pod["metadata"], pod["spec"]
    if gang == "kueue":
        meta["labels"]["kueue.x-k8s.io/queue-name"] = opts.queue or "default"
        meta["labels"]["kueue.x-k8s.io/pod-group-name"] = group_name(res)
        meta["annotations"]["kueue.x-k8s.io/pod-group-total-count"] = str(res.nodes)
        # A failed warm pod must end the gang, not wait for a replacement we never create.
        meta["annotations"]["kueue.x-k8s.io/retriable-in-group"] = "false"
    elif gang == "volcano":
        spec["schedulerName"] = opts.scheduler_name or "volcano"
        meta["annotations"]["scheduling.k8s.io/group-name"] = group_name(res)
        if opts.queue:
            meta["annotations"]["scheduling.volcano.sh/queue-name"] = opts.queue
    elif gang == "coscheduling":
        spec["schedulerName"] = opts.scheduler_name or "scheduler-plugins-scheduler"
        meta["labels"]["scheduling.x-k8s.io/pod-group"] = group_name(res)
    elif opts.scheduler_name:
        spec["schedulerName"] = opts.scheduler_name


def owned_refs(gang: str, res: Reservation, kueue_version: str = "v1beta2") -> list[CustomRef]:
    """Custom objects to delete on release (the Kueue Workload is named after the pod group)."""
    if gang == "volcano":
        return [CustomRef(VOLCANO_GROUP, "v1beta1", "podgroups", group_name(res))]
    if gang == "coscheduling":
        return [CustomRef(COSCHED_GROUP, "v1alpha1", "podgroups", group_name(res))]
    if gang == "kueue":
        return [CustomRef(KUEUE_GROUP, kueue_version, "workloads", group_name(res))]
    return []
