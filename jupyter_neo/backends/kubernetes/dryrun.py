"""``neo reserve --dry-run``: every object a reservation would create, without creating any.

The cluster is chosen by the same placement as a real reserve (without asking for free GPUs);
only API discovery is contacted, and not even that when the gang mechanism is given explicitly
(``--gang``) or configured. The output can be fed to ``kubectl apply --dry-run=server -f -``.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from jupyter_neo import placement
from jupyter_neo.backends.kubernetes.backend import KubernetesBackend
from jupyter_neo.backends.kubernetes.gang import MECHANISMS
from jupyter_neo.config import Config
from jupyter_neo.errors import InvalidRequest
from jupyter_neo.identity import owner
from jupyter_neo.model import GangRequest, Reservation, new_id
from jupyter_neo.store import Store


async def dry_run_objects(
    config: Config, store: Store, request: GangRequest, gang: str | None
) -> list[dict[str, Any]]:
    """The objects, in creation order, for the cheapest Kubernetes cluster that fits."""
    if gang is not None and gang not in MECHANISMS:
        raise InvalidRequest(f"unknown gang mechanism {gang!r}", f"use one of: {', '.join(MECHANISMS)}")
    clusters = [c for c in config.clusters if c.backend == "kubernetes"]
    if not clusters:
        raise InvalidRequest("--dry-run prints Kubernetes objects, and no kubernetes cluster is configured")
    candidates = placement.evaluate(
        request, clusters, config.defaults.residency, datasets=config.dataset_map, transfer=config.transfer
    )
    feasible = [c for c in candidates if c.rejected is None]
    if not feasible:
        raise placement.no_fit_error(request, candidates)
    cand = feasible[0]
    backend = KubernetesBackend(cand.cluster, config, store)
    res = Reservation(
        id=new_id("r"),
        name=request.name,
        cluster=cand.cluster.name,
        backend="kubernetes",
        nodes=cand.nodes,
        gpus_per_node=cand.gpus_per_node,
        gpu_type=cand.cluster.gpu_type,
        idle_ttl=request.idle_ttl,
        price_per_hour=cand.price_per_hour,
        owner=owner(),
        datasets=[fit.use() for fit in cand.data.fits],
    )
    mechanism = gang or await backend.gang_mechanism()
    return backend.objects(res, mechanism)


def render(objs: list[dict[str, Any]], fmt: str) -> str:
    """YAML documents, or a JSON ``v1 List`` (both accepted by ``kubectl apply -f``)."""
    if fmt == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}, indent=2) + "\n"
    return yaml.safe_dump_all(objs, sort_keys=False)
