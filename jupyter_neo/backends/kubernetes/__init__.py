"""The Kubernetes backend: a gang is N warm pods plus a headless Service, reached by exec.

Modules, one concern each: :mod:`.options` (cluster settings and provider profiles),
:mod:`.manifests` (pure functions: reservation -> objects), :mod:`.gang` (which gang scheduler,
detected through API discovery), :mod:`.api` (the official client, off the event loop),
:mod:`.execstream` (exec websocket -> ByteStream), :mod:`.backend` (the Backend),
:mod:`.dryrun` (``neo reserve --dry-run``).
"""

from jupyter_neo.backends.kubernetes.backend import KubernetesBackend

__all__ = ["KubernetesBackend"]
