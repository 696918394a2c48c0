"""The resident controller: one process per user and ``$NEO_HOME`` that keeps the core warm.

``neo`` commands are thin clients (:mod:`.client`, stdlib only) that forward their command line
to the controller (:mod:`.daemon`) over a unix socket and print what it streams back; the
Jupyter server's REST handlers and the ``%neo`` magics call its verbs (:mod:`.api`, through
:mod:`.remote`) and the server subscribes to its change events; the
controller owns the async :class:`~jupyter_neo.core.Core`, the agent connections to every pod of
every live reservation, one change tracker per synced (workspace, reservation), and runs. The
socket protocol is in docs/protocol.md ("Controller socket"); why a resident process at all is in
docs/architecture.md.

Nothing here is imported by ``import jupyter_neo``; the client half imports only the stdlib.
"""
