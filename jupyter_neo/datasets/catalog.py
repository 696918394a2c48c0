"""``neo datasets`` / ``GET /datasets``: every dataset, where it lives, and where it may go.

One JSON document per dataset, the same on every surface; the sidebar's datasets view draws its
cluster-by-dataset table from ``held_by`` / ``copyable_to`` / ``forbidden``.
"""

from __future__ import annotations

from typing import Any

from jupyter_neo.datasets.spec import Dataset
from jupyter_neo.model import Cluster


def describe(dataset: Dataset, clusters: list[Cluster]) -> dict[str, Any]:
    """A dataset's document: size, residency, locations with their cluster's region, and per
    cluster whether it holds the data, may receive a copy, or is out of its residency."""
    by_name = {c.name: c for c in clusters}
    held = [loc.cluster for loc in dataset.locations]
    return {
        "name": dataset.name,
        "description": dataset.description,
        "size": int(dataset.size),
        "size_human": dataset.size.human_readable(decimal=True, separator=" "),
        "residency": list(dataset.residency),
        "locations": [
            {
                "cluster": loc.cluster,
                "backend": by_name[loc.cluster].backend,
                "region": by_name[loc.cluster].region,
                "kind": loc.kind,
                "where": loc.describe(),
            }
            for loc in dataset.locations
            if loc.cluster in by_name
        ],
        "bucket": dataset.bucket.model_dump(exclude_none=True) if dataset.bucket else None,
        "held_by": held,
        "copyable_to": [c.name for c in clusters if c.name not in held and dataset.may_live_in(c.residency)],
        "forbidden": [
            c.name for c in clusters if c.name not in held and not dataset.may_live_in(c.residency)
        ],
    }


def catalog(datasets: tuple[Dataset, ...] | list[Dataset], clusters: list[Cluster]) -> list[dict[str, Any]]:
    return [describe(d, clusters) for d in datasets]
