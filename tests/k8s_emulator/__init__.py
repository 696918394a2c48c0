"""An in-repo emulator of the Kubernetes API surface jupyter-neo's backend uses.

Not a Kubernetes: a small aiohttp server with core/v1 pods, services, events and nodes, namespaced
PodGroups (Volcano, coscheduling) and Kueue LocalQueues, discovery (``/api``, ``/apis``), a
scheduler that honours node GPU capacity, node selectors, required pod anti-affinity and PodGroup
``minMember``, and the exec subprotocol (``v5``/``v4.channel.k8s.io``) over a real websocket that
runs the command as a local subprocess. A pod's emptyDir mounts are host directories, so the real
agent runs as a local process per pod and deleting a pod kills its processes; a hostPath mount is a
symlink from the mount path to the host directory, removed with the last pod that mounts it.
"""

from tests.k8s_emulator.server import Emulator, FakeNode

__all__ = ["Emulator", "FakeNode"]
