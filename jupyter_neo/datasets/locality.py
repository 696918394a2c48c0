"""Data locality in placement: is the data on a cluster, may it go there, what would moving it cost.

What "ranked by GPU price plus copy cost" means here, kept to one formula that a table can show::

    estimate = copy $ + gang $/h x (copy hours + horizon hours)

- ``copy $`` = size in GB x the egress USD/GB from the source (a cluster that holds the data or
  its bucket: the one that adds least to the estimate) to the target, from the ``transfer:`` rules;
- ``copy hours`` = size / the rule's bandwidth: the gang is held while the data moves, so the
  time of the copy is paid at the gang's price too;
- ``horizon`` (``transfer.horizon``, default 8h) = the GPU time the placement is weighed over.
  A cluster without the data wins only when its cheaper GPUs save more than the copy costs over
  the horizon. Without datasets every cluster's estimate is ``$/h x horizon``, so the ranking is
  exactly the old cheapest-first one.

A dataset whose residency tags the target cluster does not carry is never copied there: the
cluster is rejected with that reason, whatever the price. Several datasets add up (copies are
counted one after the other: conservative, and easy to check by hand).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jupyter_neo.datasets.spec import CopyEstimate, DataLocation, Dataset, DatasetUse, Transfer
from jupyter_neo.errors import InvalidRequest
from jupyter_neo.model import Cluster

GB = 1e9


@dataclass
class DataFit:
    """One requested dataset against one cluster."""

    dataset: Dataset
    read_only: bool = True
    location: DataLocation | None = None
    copy: CopyEstimate | None = None
    refused: str | None = None

    def use(self) -> DatasetUse:
        """What the reservation records once this cluster is chosen (the path is the backend's)."""
        return DatasetUse(
            name=self.dataset.name,
            read_only=self.read_only,
            present=self.location is not None,
            location=self.location,
            copy_estimate=self.copy,
        )

    def public(self) -> dict[str, object]:
        return {
            "dataset": self.dataset.name,
            "present": self.location is not None,
            "location": self.location.describe() if self.location else None,
            "copy": self.copy.model_dump() if self.copy else None,
            "refused": self.refused,
        }


@dataclass
class DataPlan:
    """Every requested dataset against one cluster, with the totals the ranking uses."""

    fits: list[DataFit] = field(default_factory=list)

    @property
    def refused(self) -> str | None:
        return next((f.refused for f in self.fits if f.refused), None)

    @property
    def copy_cost(self) -> float:
        return sum(f.copy.cost for f in self.fits if f.copy)

    @property
    def copy_seconds(self) -> float:
        return sum(f.copy.seconds for f in self.fits if f.copy)


def resolve(refs: list[str], datasets: dict[str, Dataset]) -> list[tuple[Dataset, bool]]:
    """``--data`` values (``NAME`` or ``NAME:rw``) to datasets; an unknown name is one clear line."""
    from jupyter_neo.datasets.spec import parse_data_ref

    out: list[tuple[Dataset, bool]] = []
    for ref in refs:
        name, read_only = parse_data_ref(ref)
        if name not in datasets:
            known = ", ".join(sorted(datasets)) or "none (add a datasets: section to the configuration)"
            raise InvalidRequest(f"unknown dataset {name!r}", f"configured datasets: {known}")
        if any(d.name == name for d, _ in out):
            raise InvalidRequest(f"--data {name} is given twice", "name each dataset once")
        out.append((datasets[name], read_only))
    return out


def plan_for(
    wanted: list[tuple[Dataset, bool]],
    cluster: Cluster,
    clusters: dict[str, Cluster],
    transfer: Transfer,
    price_per_hour: float = 0.0,
) -> DataPlan:
    """Each wanted dataset on ``cluster``: present, copyable (with its estimate) or refused.

    ``price_per_hour`` is the gang's on this cluster: the source of a copy is the one that adds
    least to the estimate (its cost plus the gang's price while it runs).
    """
    plan = DataPlan()
    for dataset, read_only in wanted:
        fit = DataFit(dataset, read_only, location=dataset.location_on(cluster.name))
        if fit.location is None:
            if not dataset.may_live_in(cluster.residency):
                fit.refused = (
                    f"dataset {dataset.name} may not leave residency {sorted(dataset.residency)}; "
                    f"{cluster.name} is {sorted(cluster.residency) or '[]'}"
                )
            else:
                fit.copy = cheapest_copy(dataset, cluster, clusters, transfer, price_per_hour)
        plan.fits.append(fit)
    return plan


def cheapest_copy(
    dataset: Dataset,
    target: Cluster,
    clusters: dict[str, Cluster],
    transfer: Transfer,
    price_per_hour: float = 0.0,
) -> CopyEstimate:
    """The copy of ``dataset`` to ``target`` that adds least to the estimate (``cost + gang $/h x
    hours``; then the cheaper, then the faster), from any cluster that holds it or its bucket."""
    sources: list[tuple[str, tuple[str, str]]] = [
        (f"cluster {loc.cluster}", (clusters[loc.cluster].provider, clusters[loc.cluster].region))
        for loc in dataset.locations
        if loc.cluster in clusters
    ]
    if dataset.bucket is not None:
        sources.append((dataset.bucket.url, (dataset.bucket.provider_name, dataset.bucket.region)))
    dst = (target.provider, target.region)
    best: CopyEstimate | None = None
    for label, src in sources:
        per_gb, speed = transfer.price(src, dst)
        est = CopyEstimate(
            source=label,
            bytes=int(dataset.size),
            seconds=round(int(dataset.size) / speed, 1),
            cost=round(int(dataset.size) / GB * per_gb, 2),
        )
        if best is None or weight(est, price_per_hour) < weight(best, price_per_hour):
            best = est
    if best is None:  # the configuration check makes every dataset have a source
        raise InvalidRequest(f"dataset {dataset.name} has no location and no bucket to copy it from")
    return best


def weight(copy: CopyEstimate, price_per_hour: float) -> tuple[float, float, float]:
    """What a copy adds to a gang's estimate, then its cost, then its time (the tie-breakers)."""
    return (copy.cost + price_per_hour * copy.seconds / 3600.0, copy.cost, copy.seconds)


def estimate(price_per_hour: float, plan: DataPlan, horizon_s: float) -> float:
    """``copy $ + gang $/h x (copy hours + horizon hours)``: the ranking key (see the module doc)."""
    return plan.copy_cost + price_per_hour * (plan.copy_seconds + horizon_s) / 3600.0
