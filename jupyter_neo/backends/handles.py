"""Each backend's pod handle: how that backend finds a pod again, as a typed model.

A handle is written into the reservation's state row when the backend allocates and read back by
every later process (a new controller adopting the gang, ``neo release`` after a restart), so its
shape is part of the store's format. Typed, a missing or mistyped field fails where the row is
read (the store quarantines it, see store.py) instead of as a ``KeyError`` deep inside a release.

Only the owning backend reads its handle (:func:`handle_of`); the core and surfaces never do. The
models live together here, away from the backends' code, because ``model.Pod`` names their union
and must not import the backends' clients (kubernetes, ssh) to do so.

Rows written before handles were typed carry a plain dict without ``kind``: ``model.Reservation``
fills ``kind`` in from the reservation's backend before validating (:func:`tag_legacy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from jupyter_neo.errors import BackendError

if TYPE_CHECKING:
    from jupyter_neo.model import Pod


class _Handle(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LocalHandle(_Handle):
    """A local pod: a directory ``<reservation dir>/node<N>`` and the simulated node's index."""

    kind: Literal["local"] = "local"
    node: int
    dir: str


class KubernetesHandle(_Handle):
    """A Kubernetes pod: its namespace, the gang-scheduling flavour its objects were made with
    (release deletes those objects by it) and, once running, the node it was scheduled on."""

    kind: Literal["kubernetes"] = "kubernetes"
    namespace: str
    gang: str
    node: str | None = None


class SlurmHandle(_Handle):
    """One node of a Slurm allocation: the job, the node's name and the pod's directory there."""

    kind: Literal["slurm"] = "slurm"
    job: int
    node: str
    dir: str


class SshHandle(_Handle):
    """One host of an SSH fleet: the host's configured name, the pod's directory on it and how many
    GPUs the host has (its lease files are per slot of that total)."""

    kind: Literal["ssh"] = "ssh"
    host: str
    dir: str
    total: int


PodHandle = Annotated[LocalHandle | KubernetesHandle | SlurmHandle | SshHandle, Field(discriminator="kind")]
"""Any backend's handle; ``kind`` (the backend's name) says which."""

H = TypeVar("H", bound=_Handle)


def handle_of(pod: Pod, kind: type[H]) -> H:
    """``pod``'s handle as the backend that owns it expects, or a clear error.

    A pod without a handle (a pending reservation's) or with another backend's (a cluster whose
    ``backend`` was changed in the config under a live reservation) cannot be reached this way.
    """
    handle = pod.handle
    if not isinstance(handle, kind):
        wanted = kind.model_fields["kind"].default
        found = "no handle yet" if handle is None else f"a handle of the {handle.kind} backend"
        raise BackendError(
            f"pod {pod.name} has {found}; the {wanted} backend cannot reach it",
            "release it with: neo release ID (and keep a cluster's backend unchanged while it holds pods)",
        )
    return handle


def tag_legacy(data: Any) -> Any:
    """A stored reservation document with its pods' untyped handles tagged by its backend.

    Handles were ``dict[str, Any]`` before they were typed: such a dict gets ``kind`` (an empty
    one, a pod never allocated, becomes no handle); anything else is left for validation to judge.
    """
    if not isinstance(data, dict) or not isinstance(data.get("pods"), list):
        return data
    backend = data.get("backend", "local")
    pods = []
    for doc in data["pods"]:
        handle = doc.get("handle") if isinstance(doc, dict) else None
        if isinstance(handle, dict) and "kind" not in handle:
            doc = {**doc, "handle": {"kind": backend, **handle} if handle else None}  # noqa: PLW2901
        pods.append(doc)
    return {**data, "pods": pods}
