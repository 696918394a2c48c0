"""What a sync did, as JSON-able models every surface renders the same way, and its one error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from jupyter_neo.errors import BackendError


class PodSync(BaseModel):
    """One pod's outcome: its generation and root after the sync, how long its ack took."""

    model_config = ConfigDict(extra="forbid")

    pod: str
    rank: int
    status: str  # applied | noop | repaired | failed | dry-run
    generation: int | None = None
    root: str | None = None
    latency_ms: float = 0.0
    bytes_sent: int = 0
    relayed_bytes: int = Field(default=0, description="content this pod pulled from the leader (relay)")
    error: str | None = None


class Change(BaseModel):
    """One path that moves (or would move, in a dry run), and why."""

    model_config = ConfigDict(extra="forbid")

    path: str
    why: str  # added | content changed | mode changed | retargeted | type changed | deleted


class SyncReport(BaseModel):
    """The result of one sync of a workspace into every pod of a reservation."""

    model_config = ConfigDict(extra="forbid")

    reservation: str
    root_path: str
    generation: int | None = None
    root: str
    noop: bool
    dry_run: bool = False
    added: int = 0
    changed: int = 0
    deleted: int = 0
    files: int = 0
    bytes_sent: int = 0
    uplink_bytes: int = Field(
        default=0, description="every byte the controller wrote to this gang's pod streams during the sync"
    )
    hashed: int = 0
    scan_ms: float = 0.0
    total_ms: float = 0.0
    changes: list[Change] = Field(default_factory=list)
    skipped: dict[str, str] = Field(default_factory=dict)
    pods: list[PodSync] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list, description="did not stop the sync, but needs a look")

    @property
    def stragglers(self) -> list[PodSync]:
        """Pods whose ack came more than twice the median latency (and 20 ms) after it."""
        lat = sorted(p.latency_ms for p in self.pods)
        if len(lat) < 2:
            return []
        median = lat[len(lat) // 2]
        return [p for p in self.pods if p.latency_ms > max(2 * median, median + 20)]

    def summary(self) -> str:
        """One line for a terminal or a log."""
        if self.noop:
            head = f"in sync: generation {self.generation}, root {self.root[:12]}"
        else:
            verb = "would move" if self.dry_run else f"generation {self.generation}:"
            head = (
                f"{verb} +{self.added} ~{self.changed} -{self.deleted} files, "
                f"{self.bytes_sent / 1024:.1f} KiB to {len(self.pods)} pod(s)"
            )
        slowest = max((p.latency_ms for p in self.pods), default=0.0)
        tail = f" in {self.total_ms:.0f} ms (slowest pod {slowest:.0f} ms)"
        if self.skipped:
            tail += f"; {len(self.skipped)} skipped"
        return head + tail


class SyncError(BackendError):
    """Some pods did not acknowledge the new generation; ``report`` says which and why."""

    code = "sync"

    def __init__(self, message: str, hint: str | None, report: SyncReport) -> None:
        super().__init__(message, hint)
        self.report = report
