"""Placement: which clusters can hold a gang request, in which node shape, and which is cheapest.

Every configured cluster becomes a :class:`Candidate` with either a shape and a price or the reason
it was rejected, so ``neo reserve --explain`` can show the whole table. Capacity is checked last
(it changes by the second); the reserve loop falls over to the next candidate on NoCapacity.

With ``--data`` the clusters are also judged by where the datasets are and may go, and ranked by
``estimate`` (GPU price plus the cost and time of any copy, see :mod:`jupyter_neo.datasets.locality`);
without it the estimate is the price over the horizon, so the order is plain cheapest-first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jupyter_neo.datasets import locality
from jupyter_neo.datasets.spec import Dataset, Transfer
from jupyter_neo.durations import parse_duration
from jupyter_neo.errors import InvalidRequest
from jupyter_neo.model import Cluster, GangRequest


@dataclass
class Candidate:
    cluster: Cluster
    nodes: int = 0
    gpus_per_node: int = 0
    free_gpus: int | None = None
    rejected: str | None = None
    error: InvalidRequest | None = None
    data: locality.DataPlan = field(default_factory=locality.DataPlan)
    estimate: float = 0.0

    @property
    def price_per_hour(self) -> float:
        return self.cluster.price_per_gpu_hour * self.nodes * self.gpus_per_node

    def public(self) -> dict[str, object]:
        """The JSON of one candidate, as ``neo reserve --explain --json`` and ``GET /placement`` show it."""
        return {
            "cluster": self.cluster.name,
            "nodes": self.nodes,
            "gpus_per_node": self.gpus_per_node,
            "price_per_hour": self.price_per_hour,
            "free_gpus": self.free_gpus,
            "rejected": self.rejected,
            "data": [f.public() for f in self.data.fits],
            "copy_cost": round(self.data.copy_cost, 2),
            "copy_seconds": round(self.data.copy_seconds, 1),
            "estimate": round(self.estimate, 2) if self.rejected is None else None,
        }


def shape_for(request: GangRequest, cluster: Cluster) -> tuple[int, int]:
    """Nodes x GPUs-per-node for ``request`` on ``cluster``; raises InvalidRequest with the fix."""
    n = request.gpus
    per = cluster.gpus_per_node
    if request.nodes is not None:
        if n % request.nodes:
            raise InvalidRequest(
                f"--gpus {n} does not divide into --nodes {request.nodes}",
                f"use a multiple of {request.nodes} GPUs, e.g. --gpus {request.nodes * max(1, n // request.nodes)}",
            )
        nodes, gpn = request.nodes, n // request.nodes
        if gpn > per:
            raise InvalidRequest(
                f"{gpn} GPUs per node is more than {cluster.name!r} nodes have ({per})",
                f"use --nodes {-(-n // per)} or more",
            )
    elif n <= per:
        nodes, gpn = 1, n
    elif n % per:
        raise InvalidRequest(
            f"--gpus {n} is not a whole number of {cluster.name!r} nodes ({per} GPUs each)",
            f"use a multiple of {per} (e.g. --gpus {per * (n // per)} or {per * (n // per + 1)}), "
            f"or say --nodes K so that K divides {n}",
        )
    else:
        nodes, gpn = n // per, per
    if nodes > cluster.nodes:
        raise InvalidRequest(
            f"{n} GPUs need {nodes} nodes; {cluster.name!r} has {cluster.nodes} "
            f"({cluster.total_gpus} GPUs in all)",
            "ask for fewer GPUs or pick a bigger cluster (neo clusters)",
        )
    return nodes, gpn


def evaluate(
    request: GangRequest,
    clusters: list[Cluster],
    residency: list[str] | None = None,
    *,
    datasets: dict[str, Dataset] | None = None,
    transfer: Transfer | None = None,
) -> list[Candidate]:
    """Every cluster with its verdict, lowest estimate (cheapest) acceptable first."""
    wanted_residency = set(request.residency or residency or [])
    transfer = transfer or Transfer()
    wanted_data = locality.resolve(request.data, datasets or {})
    by_name = {c.name: c for c in clusters}
    horizon = parse_duration(transfer.horizon) or 0.0
    out: list[Candidate] = []
    for cluster in clusters:
        cand = Candidate(cluster)
        out.append(cand)
        if request.cluster and cluster.name != request.cluster:
            cand.rejected = "not the requested cluster"
            continue
        if request.gpu_type and cluster.gpu_type.lower() != request.gpu_type.lower():
            cand.rejected = f"GPU type {cluster.gpu_type}, not {request.gpu_type}"
            continue
        if request.region and cluster.region != request.region:
            cand.rejected = f"region {cluster.region}, not {request.region}"
            continue
        if wanted_residency and not wanted_residency & set(cluster.residency):
            cand.rejected = (
                f"residency {sorted(cluster.residency) or '[]'} outside {sorted(wanted_residency)}"
            )
            continue
        if request.max_price is not None and cluster.price_per_gpu_hour > request.max_price:
            cand.rejected = (
                f"${cluster.price_per_gpu_hour:.2f}/GPU-h is above --max-price {request.max_price:.2f}"
            )
            continue
        try:
            cand.nodes, cand.gpus_per_node = shape_for(request, cluster)
        except InvalidRequest as exc:
            cand.rejected = exc.message
            cand.error = exc
            continue
        if wanted_data:
            cand.data = locality.plan_for(wanted_data, cluster, by_name, transfer, cand.price_per_hour)
            cand.rejected = cand.data.refused
        cand.estimate = locality.estimate(cand.price_per_hour, cand.data, horizon)
    ok = sorted((c for c in out if c.rejected is None), key=lambda c: (c.estimate, c.cluster.name))
    return ok + [c for c in out if c.rejected is not None]


def no_fit_error(
    request: GangRequest, candidates: list[Candidate], residency: list[str] | None = None
) -> InvalidRequest:
    """The clearest single error when no cluster is acceptable."""
    if request.cluster and not any(c.cluster.name == request.cluster for c in candidates):
        names = ", ".join(c.cluster.name for c in candidates)
        return InvalidRequest(f"unknown cluster {request.cluster!r}", f"configured clusters: {names}")
    if request.gpu_type and not any(
        c.cluster.gpu_type.lower() == request.gpu_type.lower() for c in candidates
    ):
        types = ", ".join(sorted({c.cluster.gpu_type for c in candidates}))
        return InvalidRequest(f"unknown GPU type {request.gpu_type!r}", f"available GPU types: {types}")
    wanted = set(request.residency or residency or [])
    if wanted and not any(wanted & set(c.cluster.residency) for c in candidates):
        where = ", ".join(
            f"{c.cluster.name} ({c.cluster.region}: {c.cluster.residency or []})" for c in candidates
        )
        return InvalidRequest(
            f"no cluster satisfies residency {sorted(wanted)}", f"clusters and their regions: {where}"
        )
    priced = [c for c in candidates if c.rejected and "above --max-price" in c.rejected]
    if request.max_price is not None and priced:
        cheapest = min(priced, key=lambda c: c.cluster.price_per_gpu_hour)
        return InvalidRequest(
            f"--max-price {request.max_price:.2f} is below every offer that fits",
            f"the cheapest is {cheapest.cluster.name} at ${cheapest.cluster.price_per_gpu_hour:.2f}/GPU-h",
        )
    if len(candidates) == 1 or request.cluster:
        only = next(c for c in candidates if not request.cluster or c.cluster.name == request.cluster)
        if only.error is not None:
            return only.error
        return InvalidRequest(f"cluster {only.cluster.name!r} cannot take this request: {only.rejected}")
    lines = "; ".join(f"{c.cluster.name}: {c.rejected}" for c in candidates)
    return InvalidRequest(
        f"no configured cluster fits this request ({lines})", "see: neo reserve --explain ..."
    )
