"""The ``datasets:`` and ``transfer:`` configuration sections, and a reservation's record of its data.

A dataset has a size, residency tags (where it may be stored and processed: empty = anywhere)
and locations, one per cluster that holds it: a ``path`` on the nodes (local, Slurm, SSH) or a
Kubernetes volume (``pvc``, ``nfs`` or ``host_path``); optionally a bucket it can be copied from.

``transfer:`` prices moving data: USD per GB leaving a place and the bandwidth of the copy, with
rules matched on the source's and the target's provider and region (first match wins), plus the
``horizon``: how many hours of GPU time a placement is weighed over against a one-off copy (see
:mod:`jupyter_neo.datasets.locality`).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ByteSize, ConfigDict, Field, field_validator, model_validator

DATASET_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
MOUNT_ROOT = "/data"
"""Where datasets appear in a pod on backends that can mount (``/data/<name>``)."""
KUBE_SOURCES = ("pvc", "nfs", "host_path")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NfsSource(_Spec):
    """An NFS export, as a Kubernetes ``nfs`` volume names it."""

    server: str
    path: str


class DataLocation(_Spec):
    """Where one cluster holds a dataset: exactly one of ``path``, ``pvc``, ``nfs``, ``host_path``."""

    cluster: str
    path: str | None = Field(default=None, description="a folder on every node (local, slurm, ssh)")
    pvc: str | None = Field(default=None, description="a PersistentVolumeClaim in the namespace (kubernetes)")
    nfs: NfsSource | None = Field(default=None, description="an NFS export (kubernetes)")
    host_path: str | None = Field(default=None, description="a directory on every node (kubernetes hostPath)")

    @model_validator(mode="after")
    def _one_source(self) -> DataLocation:
        given = [k for k in ("path", *KUBE_SOURCES) if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a location needs exactly one of path (local/slurm/ssh), pvc, nfs or host_path (kubernetes)"
                + (f"; got {', '.join(given)}" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("path", *KUBE_SOURCES) if getattr(self, k) is not None)

    def describe(self) -> str:
        """One phrase for tables: ``path /srv/imagenet``, ``pvc imagenet-ro``, ``nfs 10.0.0.5:/x``."""
        if self.nfs is not None:
            return f"nfs {self.nfs.server}:{self.nfs.path}"
        return f"{self.kind.replace('_', '-')} {getattr(self, self.kind)}"


class Bucket(_Spec):
    """An object-store copy of a dataset: a source for copies to clusters that lack it."""

    url: str
    region: str
    provider: str | None = Field(default=None, description="default: from the URL (s3 aws, gs gcp, az azure)")

    @property
    def provider_name(self) -> str:
        if self.provider:
            return self.provider
        scheme = self.url.split("://", 1)[0].lower()
        return {"s3": "aws", "gs": "gcp", "az": "azure", "abfs": "azure"}.get(scheme, scheme or "bucket")


class Dataset(_Spec):
    """A named dataset, as configured."""

    name: str
    size: ByteSize = Field(description="e.g. 150GB, 2TiB")
    residency: list[str] = Field(
        default_factory=list, description="where it may be stored and processed; empty = anywhere"
    )
    locations: list[DataLocation] = Field(default_factory=list)
    bucket: Bucket | None = None
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not DATASET_NAME_RE.match(value):
            raise ValueError("dataset names are lower-case letters, digits and '-' (at most 40 characters)")
        return value

    def location_on(self, cluster: str) -> DataLocation | None:
        return next((loc for loc in self.locations if loc.cluster == cluster), None)

    def may_live_in(self, tags: list[str]) -> bool:
        """Whether a cluster carrying residency ``tags`` may store and process this dataset."""
        return not self.residency or bool(set(self.residency) & set(tags))

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class TransferRule(_Spec):
    """Price and speed of copies that match it; unset match fields match anything."""

    from_provider: str | None = None
    from_region: str | None = None
    to_provider: str | None = None
    to_region: str | None = None
    egress_per_gb: float | None = Field(default=None, ge=0, description="USD per GB (10^9 bytes) moved")
    bandwidth: ByteSize | None = Field(default=None, gt=0, description="per second, e.g. 10Gbit, 500MB")

    def matches(self, src: tuple[str, str], dst: tuple[str, str]) -> bool:
        want = (self.from_provider, self.from_region, self.to_provider, self.to_region)
        have = (*src, *dst)
        return all(w is None or w == h for w, h in zip(want, have, strict=True))


class Transfer(_Spec):
    """How moving data is priced. Defaults: $0.05/GB, 1 Gbit/s, free and 10 Gbit/s within a region."""

    horizon: str | float = Field(
        default="8h", description="GPU time a placement is weighed over against a copy (a duration)"
    )
    egress_per_gb: float = Field(default=0.05, ge=0)
    bandwidth: ByteSize = Field(default=ByteSize(125_000_000), gt=0, description="per second (1Gbit)")
    same_region_per_gb: float = Field(default=0.0, ge=0)
    same_region_bandwidth: ByteSize = Field(default=ByteSize(1_250_000_000), gt=0)
    rules: list[TransferRule] = Field(default_factory=list)

    def price(self, src: tuple[str, str], dst: tuple[str, str]) -> tuple[float, float]:
        """(USD per GB, bytes per second) for a copy from ``src`` to ``dst`` (provider, region)."""
        same = src == dst
        per_gb = self.same_region_per_gb if same else self.egress_per_gb
        speed = float(self.same_region_bandwidth if same else self.bandwidth)
        for rule in self.rules:
            if rule.matches(src, dst):
                if rule.egress_per_gb is not None:
                    per_gb = rule.egress_per_gb
                if rule.bandwidth is not None:
                    speed = float(rule.bandwidth)
                break
        return per_gb, speed


class CopyEstimate(_Spec):
    """Moving a dataset to a cluster that lacks it: from where, how much, how long, how much money."""

    source: str = Field(description="'cluster NAME' or the bucket URL")
    bytes: int
    seconds: float
    cost: float


class DatasetUse(_Spec):
    """What a reservation records about one dataset it asked for (shown by every surface)."""

    name: str
    read_only: bool = True
    present: bool = Field(description="the chosen cluster holds it")
    location: DataLocation | None = Field(default=None, description="where the cluster holds it")
    path: str | None = Field(
        default=None, description="where ranks find it (also NEO_DATA_<NAME>); None when absent"
    )
    copy_estimate: CopyEstimate | None = Field(
        default=None, description="the copy it would take (when absent); jupyter-neo does not copy data"
    )

    @property
    def env_name(self) -> str:
        return env_name(self.name)


def env_name(dataset: str) -> str:
    """``NEO_DATA_<NAME>``: upper case, '-' as '_' (``image-net`` -> ``NEO_DATA_IMAGE_NET``)."""
    return "NEO_DATA_" + dataset.upper().replace("-", "_")


def parse_data_ref(text: str) -> tuple[str, bool]:
    """``NAME`` (read-only) or ``NAME:rw`` (writable) -> (name, read_only)."""
    name, _, mode = text.partition(":")
    if mode not in ("", "ro", "rw"):
        from jupyter_neo.errors import InvalidRequest

        raise InvalidRequest(f"--data {text!r}: the mode after ':' is ro or rw", "e.g. --data imagenet:rw")
    return name, mode != "rw"
