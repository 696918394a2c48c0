"""The jupyter-neo pod agent: stdlib-only, Python 3.8+, shipped over a byte stream at connect time.

Nothing is preinstalled in a pod. The controller runs a small fixed bootstrap (``boot.STUB``) with
``python3 -c`` over whatever stream reaches the pod (a subprocess pipe, a Kubernetes exec
websocket, ``srun``, an SSH channel). The bootstrap receives this package as a zip when the pod
does not hold this exact version yet, starts one resident agent per pod (unix socket) and relays
the stream to it, so later connections attach in milliseconds.
"""

PROTOCOL_VERSION = 1
AGENT_VERSION = "0.1.0"
