"""Bootstrap and relay: how a fresh byte stream becomes a connection to the pod's resident agent.

``STUB`` is the only code that must run before the agent exists in the pod. It is a fixed string
(never built from user input) run as ``python3 -c STUB AGENT_DIR HASH``. It prints ``NEED`` when
the pod lacks agent version HASH and then reads the zip (length line + bytes) from the stream; it
then imports this package from the zip and calls :func:`relay`, which starts the resident agent if
none answers and copies bytes between the stream and the agent's unix socket.
"""

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

GUARD = r"""
import hashlib, os, sys
d, h = sys.argv[1], sys.argv[2]
os.makedirs(d, mode=0o700, exist_ok=True)
u, r = os.getuid(), os.path.realpath(d)
p = r
while True:
    s = os.lstat(p)
    if s.st_uid not in (u, 0) or (p == r and s.st_uid != u):
        sys.stderr.write("neo-agent: refusing agent directory %s: %s belongs to uid %d, not to this "
                         "user (uid %d); remove it or set another base_dir\n" % (d, p, s.st_uid, u))
        sys.exit(4)
    q = os.path.dirname(p)
    if q == p:
        break
    p = q
if os.stat(r).st_mode & 0o077:
    os.chmod(r, 0o700)
z = os.path.join(d, "agent-" + h + ".pyz")
def have(z, h):
    try:
        with open(z, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:16] == h
    except OSError:
        return False
"""
"""Run first by every stub, before anything in the agent directory is trusted.

The directory (and every directory above it) must belong to this user or root, so nobody else can
plant an agent zip or a fake agent socket there: on a shared login or compute node the default
``/tmp/jupyter-neo-<user>`` could have been created by another user first. The directory is made
private (0700), and a zip already there is used only if its content hashes to the version asked
for (a truncated or replaced one is uploaded again). A world-writable directory above it without
the sticky bit is accepted: a Kubernetes ``emptyDir`` volume is one (mode 0777), and a pod is one
user's (refusing it broke every pod on the Kubernetes harness).
"""

STUB = (
    GUARD
    + r"""
i, o = sys.stdin.buffer, sys.stdout.buffer
if not have(z, h):
    o.write(b"NEED\n"); o.flush()
    n = int(i.readline())
    b = i.read(n)
    if hashlib.sha256(b).hexdigest()[:16] != h:
        sys.stderr.write("neo-agent: corrupt agent upload\n"); sys.exit(3)
    t = "%s.%d.tmp" % (z, os.getpid())
    with open(t, "wb") as f:
        f.write(b)
    os.replace(t, z)
sys.path.insert(0, z)
from neo_agent.boot import relay
relay(d, z)
"""
)

SOCKET_NAME = "agent.sock"
START_TIMEOUT = 15.0


def _connect(agent_dir: str) -> "socket.socket | None":
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Relative path: unix socket paths are limited to ~107 bytes, pod dirs can be longer.
        sock.connect(SOCKET_NAME)
        return sock
    except OSError:
        sock.close()
        return None


def exit_reason(agent_dir: str) -> "str | None":
    """Why the agent of ``agent_dir`` stopped (its ``exit.json``), or None if it never did.

    An agent writes the record before it closes its socket, so a stream opened while the pod ends
    (a controller re-opening a dropped connection) finds it and starts nothing (a new agent there
    would hold no lease and no reservation: an orphan on the node), and the keeper's reconcile
    answer names the reason while the pod is still stopping.
    """
    from neo_agent.gpu_leases import read_json

    record = read_json(os.path.join(agent_dir, "exit.json"))
    return None if record is None else str(record.get("reason") or "stopped")


def ensure_agent(agent_dir: str, zip_path: str) -> socket.socket:
    """Connect to the resident agent, starting it first if none answers (one starter at a time)."""
    os.chdir(agent_dir)
    sock = _connect(agent_dir)
    if sock is not None:
        return sock
    import fcntl

    with open("start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = _connect(agent_dir)
        if sock is not None:
            return sock
        ended = exit_reason(os.curdir)  # the cwd is the agent directory (chdir above)
        if ended is not None:
            sys.stderr.write("neo-agent: refusing to start an agent in a pod that ended (%s)\n" % ended)
            raise SystemExit(5)
        with open("agent.log", "ab") as log:
            subprocess.Popen(
                [sys.executable, zip_path, "serve", agent_dir],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            sock = _connect(agent_dir)
            if sock is not None:
                return sock
            time.sleep(0.01)
    raise SystemExit("neo-agent: resident agent did not start; see %s/agent.log" % agent_dir)


def relay(agent_dir: str, zip_path: str) -> None:
    """Copy bytes both ways between this process's stdio and the resident agent."""
    sock = ensure_agent(agent_dir, zip_path)
    out = sys.stdout.buffer
    out.write(b"READY\n")
    out.flush()
    inp: Any = sys.stdin.buffer  # a BufferedReader: read1 returns what is there

    def upstream() -> None:
        try:
            while True:
                chunk = inp.read1(1 << 16)
                if not chunk:
                    break
                sock.sendall(chunk)
        except OSError:
            pass
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=upstream, daemon=True).start()
    try:
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            out.write(chunk)
            out.flush()
    except (OSError, ValueError):
        pass
    os._exit(0)
