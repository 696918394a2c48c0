"""Backends differ only in how they reserve pods and open a byte stream to one.

Importing the package imports nothing else (``model`` imports :mod:`.handles` from it); each
backend's module, and the contract in :mod:`.base`, are imported where they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jupyter_neo.backends.base import Backend
    from jupyter_neo.config import Config
    from jupyter_neo.model import Cluster
    from jupyter_neo.store import Store


def backend_for(cluster: Cluster, config: Config, store: Store) -> Backend:
    """Instantiate the backend class that serves ``cluster`` (imported lazily: heavy clients)."""
    if cluster.backend == "local":
        from jupyter_neo.backends.local import LocalBackend

        return LocalBackend(cluster, config, store)
    if cluster.backend == "kubernetes":
        from jupyter_neo.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(cluster, config, store)
    if cluster.backend == "slurm":
        from jupyter_neo.backends.slurm import SlurmBackend

        return SlurmBackend(cluster, config, store)
    if cluster.backend == "ssh":
        from jupyter_neo.backends.ssh import SshBackend

        return SshBackend(cluster, config, store)
    from jupyter_neo.errors import ConfigError

    raise ConfigError(
        f"cluster {cluster.name!r}: backend {cluster.backend!r} is not available in this version",
        "use backend: local, kubernetes, slurm or ssh",
    )


__all__ = ["backend_for"]
