"""The words of the product as types: Cluster, GangRequest, Reservation, Pod.

Every surface (CLI ``--json``, REST, sidebar, magics) serialises these same models, so their JSON
shapes are the API. Validation lives here so that bad input fails the same way everywhere.
"""

from __future__ import annotations

import enum
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    computed_field,
    field_validator,
    model_validator,
)

from jupyter_neo.backends.handles import PodHandle, tag_legacy
from jupyter_neo.datasets.spec import DatasetUse
from jupyter_neo.money import USD

BackendName = Literal["local", "kubernetes", "slurm", "ssh"]
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
ID_RE = re.compile(r"^[a-z]+-[0-9a-z]{6}-[0-9a-f]{4}$")
"""The shape of :func:`new_id`; a name of this shape could shadow another reservation's id."""
MAX_GPUS = 1_000_000


def _whole_number(value: object) -> object:
    # JSON ``true`` is not a GPU count, although Python counts it as 1.
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true/false")
    return value


Count = Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=MAX_GPUS)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Cluster(_Model):
    """A place GPUs come from, as configured."""

    name: str
    backend: BackendName = "local"
    provider: str = "local"
    region: str = "local"
    residency: list[str] = Field(default_factory=list)
    gpu_type: str = "virtual"
    nodes: int = Field(ge=1)
    gpus_per_node: int = Field(ge=1)
    price_per_gpu_hour: float = Field(default=0.0, ge=0)
    env: dict[str, str] = Field(
        default_factory=dict, description="environment for every process (NCCL profile)"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="backend-specific settings")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("cluster names are lower-case letters, digits and '-' (at most 40 characters)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _fleet_nodes(cls, data: Any) -> Any:
        """An SSH fleet has as many nodes as it lists hosts: ``nodes:`` may be left out."""
        if isinstance(data, dict) and data.get("backend") == "ssh" and "nodes" not in data:
            hosts = (data.get("options") or {}).get("hosts")
            if isinstance(hosts, list) and hosts:
                return {**data, "nodes": len(hosts)}
        return data

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node


class HostHold(_Model):
    """GPUs of one host held by one reservation (an SSH fleet's lease files say who and until when)."""

    reservation: str
    owner: str
    gpus: list[int]
    expires_in: float = Field(description="seconds until the lease expires unless its holder renews it")


class HostStatus(_Model):
    """One host of an SSH fleet right now: GPUs, who holds them, or why it cannot be used."""

    name: str
    destination: str
    hostname: str | None = None
    gpus: int = 0
    gpu_model: str | None = None
    free: int = 0
    held: list[HostHold] = Field(default_factory=list)
    problem: str | None = None


class ClusterStatus(_Model):
    """A cluster with its capacity right now: what ``neo clusters`` and ``GET /clusters`` show."""

    name: str
    backend: BackendName
    provider: str
    region: str
    residency: list[str]
    gpu_type: str
    nodes: int
    gpus_per_node: int
    total_gpus: int
    free_gpus: int
    price_per_gpu_hour: float
    allocatable_gpus: int | None = Field(
        default=None, description="GPUs the cluster's nodes offer (kubernetes)"
    )
    requested_gpus: int | None = Field(
        default=None, description="GPUs requested by running pods (kubernetes)"
    )
    hosts: list[HostStatus] | None = Field(default=None, description="per host (ssh fleets)")


class GangRequest(_Model):
    """What a user asks for: N GPUs as one gang, with placement constraints."""

    gpus: Count = Field(description="total GPUs of the gang")
    nodes: Count | None = None
    gpu_type: str | None = None
    cluster: str | None = None
    region: str | None = None
    residency: list[str] = Field(default_factory=list)
    max_price: USD | None = Field(default=None, description="max USD per GPU-hour")
    idle_ttl: float | None = Field(
        default=1800.0, ge=0, allow_inf_nan=False, description="seconds idle before release; None = never"
    )
    budget: USD | None = Field(default=None, description="USD cap for the whole reservation")
    name: str | None = None
    data: list[str] = Field(
        default_factory=list, description="datasets the gang needs: NAME (read-only) or NAME:rw"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_RE.match(value):
            raise ValueError("names are lower-case letters, digits and '-' (at most 40 characters)")
        if value is not None and ID_RE.match(value):
            raise ValueError("a name may not look like a reservation id (r-xxxxxx-xxxx)")
        return value


REQUEST_FIELDS = tuple(GangRequest.model_fields)
"""The gang-request fields, named alike by CLI flags, REST bodies and ``Client.reserve``."""


class PodState(enum.StrEnum):
    PENDING = "pending"
    READY = "ready"
    LOST = "lost"
    RELEASED = "released"


class Pod(_Model):
    """One node's slot in a reservation. ``handle`` is the backend's private way to reach it
    (backends/handles.py): stored with the reservation, never shown."""

    name: str
    rank: int
    address: str
    state: PodState = PodState.PENDING
    gpus: list[int] = Field(default_factory=list)
    handle: PodHandle | None = Field(default=None, exclude=True)
    stats: dict[str, Any] | None = None


class ReservationState(enum.StrEnum):
    PENDING = "pending"
    READY = "ready"
    DEGRADED = "degraded"
    RELEASED = "released"


class Reservation(_Model):
    """An admitted gang: pods in rank order (leader first), its lease and its cost."""

    id: str
    name: str | None = None
    cluster: str
    backend: BackendName
    state: ReservationState = ReservationState.PENDING
    nodes: int
    gpus_per_node: int
    gpu_type: str
    pods: list[Pod] = Field(default_factory=list)
    created: datetime = Field(default_factory=utcnow)
    ready_at: datetime | None = None
    released_at: datetime | None = None
    idle_ttl: float | None = None
    budget: float | None = None
    price_per_hour: float = Field(ge=0, description="USD per hour for the whole gang")
    owner: str = ""
    reason: str | None = Field(default=None, description="why the reservation is degraded or released")
    deadline: datetime | None = Field(
        default=None, description="when the budget runs out; enforced in the pods"
    )
    budget_warned: bool = False
    datasets: list[DatasetUse] = Field(
        default_factory=list, description="the datasets it asked for: where ranks find them, or the copy"
    )
    secret: str = Field(default="", exclude=True, repr=False)
    idle_release_at: datetime | None = Field(
        default=None,
        description="live views: when the pods release themselves if nothing happens (from the agents)",
    )
    busy: bool | None = Field(
        default=None, description="live views: a running process keeps the gang from idling"
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_handles(cls, data: Any) -> Any:
        """Rows stored before pod handles were typed hold plain dicts: tag them with the backend."""
        return tag_legacy(data)

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def active(self) -> bool:
        return self.state is not ReservationState.RELEASED

    @property
    def live(self) -> bool:
        """Its pods are up (ready, or degraded with some missing): what reconcile and runs check."""
        return self.state in (ReservationState.READY, ReservationState.DEGRADED)

    def held_seconds(self, now: datetime | None = None) -> float:
        """Seconds billed: from creation to release, never past the budget's deadline (the pods
        stop themselves there, whenever a controller gets round to noticing)."""
        end = self.released_at or now or utcnow()
        if self.deadline is not None:
            end = min(end, self.deadline)
        return max(0.0, (end - self.created).total_seconds())

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cost(self) -> float:
        """USD so far: the gang's price per hour times the time it has been held."""
        return round(self.price_per_hour * self.held_seconds() / 3600.0, 6)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def budget_used(self) -> float | None:
        """Fraction of the budget spent (None without a budget)."""
        return round(self.cost / self.budget, 4) if self.budget else None

    def public(self) -> dict[str, Any]:
        """The JSON document every surface shows."""
        return self.model_dump(mode="json")


class RunState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    LOST = "lost"
    """Its controller died (or its pods went away) before it could see the end; see ``error``."""


class RankStatus(_Model):
    """One rank of a run: where it ran and how it ended (``exit_code`` None while running/unknown)."""

    rank: int
    node: int
    local_rank: int
    state: RunState = RunState.STARTING
    exit_code: int | None = None
    log: str = ""
    phase: Literal["starting", "importing", "running", "exited"] = Field(
        default="starting",
        description="the process's life: starting (launcher up), importing (rank process started), "
        "running (first output line), exited",
    )


class Run(_Model):
    """One execution of a command across a reservation."""

    id: str
    reservation: str
    command: list[str]
    kind: Literal["script", "module", "cmd", "check"] = "script"
    launcher: Literal["torchrun", "plain"] = "torchrun"
    state: RunState = RunState.STARTING
    nodes: int
    nproc_per_node: int
    started: datetime = Field(default_factory=utcnow)
    ended: datetime | None = None
    exit_code: int | None = None
    ranks: list[RankStatus] = Field(default_factory=list)
    log_dir: str = ""
    master: str = ""
    failed_node: int | None = None
    failed_rank: int | None = None
    error: str | None = Field(
        default=None, description="why the run failed, with the failing rank's last lines"
    )
    timings: dict[str, float] = Field(
        default_factory=dict, description="seconds per phase (sync, launch, ...)"
    )
    owner: str = ""
    hot: bool = False
    session: str | None = Field(
        default=None, description="hot reload: the run whose workers this iteration used"
    )
    iteration: int = 0
    fingerprint: str = Field(default="", description="launch arguments; a change forces a cold restart")
    note: str | None = Field(default=None, description="one line on how the run started (cold/hot and why)")
    label: str | None = Field(
        default=None, description="a readable name (a notebook cell's runs: 'cell [3]: train()')"
    )
    not_applied: str | None = Field(
        default=None,
        description="a hot iteration whose code was not applied, and why (the workers run on with the old code)",
    )
    detached: bool = Field(default=False, description="runs on without a controller (neo run --detach)")
    lease: float | None = Field(
        default=None,
        description="run lease: the pods stop the run after this many seconds without a heartbeat",
    )
    controller: dict[str, float] | None = Field(
        default=None, description="pid and start time of the process supervising the run"
    )
    collected: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="bytes of each node's output already in the rank logs (detached runs)",
    )
    metrics: list[dict[str, float | int | str]] = Field(
        default_factory=list,
        description="records of jupyter_neo.log(...) from the ranks: rank, step, time and named values",
    )

    @property
    def done(self) -> bool:
        return self.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.STOPPED, RunState.LOST)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration(self) -> float:
        end = self.ended or utcnow()
        return round((end - self.started).total_seconds(), 3)

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


MAX_LIMIT = 100_000


def parse_limit(raw: object, name: str = "limit") -> int:
    """How many records to list (``neo runs --limit``, ``GET runs?limit=``): 1 to :data:`MAX_LIMIT`.

    Anything else (``1e20``, ``true``, a number sqlite cannot hold) is a one-line error.
    """
    from jupyter_neo.errors import InvalidRequest

    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.strip().lstrip("+-").isdigit():
        value = int(raw.strip())
    if value is None or not 1 <= value <= MAX_LIMIT:
        raise InvalidRequest(f"{name} must be a whole number from 1 to {MAX_LIMIT:,} (got {raw!r})")
    return value


def new_id(prefix: str = "r") -> str:
    """Short, sortable, unique ids: a time part and a random part (``r-lx3k9a-4f2c``)."""
    import secrets

    stamp = _base36(int(time.time() * 1000))[-6:]
    return f"{prefix}-{stamp}-{secrets.token_hex(2)}"


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"
