"""The keeper of one SSH pod: parent of the pod's agent, holder of its GPU leases on the host.

``agent.pyz keep POD_DIR LEASE_DIR RID TTL SLOTS`` forks a keeper into its own session and returns
once the agent answers on its socket (printing ``ok``), so one SSH round trip both starts the pod
and proves it started. The keeper then, with no controller anywhere:

* renews the reservation's leases every TTL/3 (``neo_agent.gpu_leases.renew``). If a lease is no
  longer ours (it expired while this host was frozen and another reservation took the slot), it
  stops the agent at once: a slot never has two users;
* stops an agent that nobody claimed within TTL (a controller killed mid-reserve);
* when the agent exits (idle TTL, budget deadline, release, crash), kills whatever the pod left
  running, gives the leases back, records why, and removes the pod directory.

If the keeper itself is killed (SIGKILL, host crash) its leases simply stop being renewed and
expire after TTL, when any reservation may break them.

``agent.pyz release POD_DIR LEASE_DIR RID`` is the controller's verified release: stop the keeper
(and so the agent), kill leftovers, give the leases, remove the pod directory, then report what is
still there (``{"leases": n, "procs": [...]}``; both empty means released).
``agent.pyz pod POD_DIR LEASE_DIR RID`` reports a pod's state for reconcile.
"""

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from neo_agent import gpu_leases
from neo_agent.boot import exit_reason

START_TIMEOUT = 30.0
TICK = 0.5


def _zip_path() -> str:
    """The agent zip this code runs from (``.../agent-<hash>.pyz/neo_agent/keeper.py``)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _exit_file(pod_dir: str) -> str:
    base, name = os.path.split(pod_dir)
    top, rid = os.path.split(base)
    return os.path.join(top, ".exits", "%s.%s.json" % (rid, name))


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/status" % pid) as f:
            state = next((ln for ln in f if ln.startswith("State:")), "")
    except OSError:
        return False
    return "Z" not in state.split()[1:2]


def procs_under(pod_dir: str) -> List[int]:
    """Live processes of this pod: its keeper (``keep POD_DIR ...``), its agent (``serve
    AGENT_DIR``) and everything the agent started (``NEO_AGENT_DIR`` in their environment).

    Exact argv items only: an ``ssh`` client whose one remote-command argument mentions the
    directory (a controller on this machine), or a ``release`` of this pod, is not the pod.
    """
    agent_dir = os.path.join(pod_dir, "agent").encode()
    env_item = b"NEO_AGENT_DIR=" + agent_dir
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().rstrip(b"\0").split(b"\0")
            keeper = b"keep" in argv and pod_dir.encode() in argv
            if keeper or argv[-2:] == [b"serve", agent_dir]:
                found.append(pid)
                continue
            with open("/proc/%d/environ" % pid, "rb") as f:
                if env_item in f.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue
    return [pid for pid in found if _alive(pid)]


def kill_all(pids: List[int], grace: float) -> None:
    """SIGTERM, wait up to ``grace``, then SIGKILL whatever is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 3.0)):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        end = time.time() + wait
        while time.time() < end and any(_alive(p) for p in pids):
            time.sleep(0.05)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            return


def _connects(agent_dir: str) -> bool:
    """Whether the agent accepts connections (relative path: socket paths are limited to ~107 bytes)."""
    os.chdir(agent_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect("agent.sock")
        return True
    except OSError:
        return False
    finally:
        sock.close()


class Keeper:
    def __init__(self, pod_dir: str, lease_dir: str, rid: str, ttl: float, slots: List[int]) -> None:
        self.pod_dir = pod_dir
        self.agent_dir = os.path.join(pod_dir, "agent")
        self.lease_dir = lease_dir
        self.rid = rid
        self.ttl = ttl
        self.slots = slots
        self.agent: Optional["subprocess.Popen[bytes]"] = None
        self.reason = ""

    def start_agent(self, zip_path: str) -> None:
        """Start the agent under the boot stub's start lock, so a stream never starts a second one."""
        with open(os.path.join(self.agent_dir, "start.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with open(os.path.join(self.agent_dir, "agent.log"), "ab") as log:
                self.agent = subprocess.Popen(
                    [sys.executable, zip_path, "serve", self.agent_dir],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    close_fds=True,
                )
            end = time.time() + START_TIMEOUT
            while not _connects(self.agent_dir):
                if self.agent.poll() is not None or time.time() > end:
                    raise RuntimeError("the agent did not start; see %s/agent.log" % self.agent_dir)
                time.sleep(0.02)

    def stop(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
        if self.agent is not None and self.agent.poll() is None:
            with contextlib.suppress(OSError):
                self.agent.terminate()

    def watch(self) -> None:
        """Renew the leases while the agent lives; stop it when it must not go on."""
        assert self.agent is not None
        started = time.time()
        renew_at = started + self.ttl / 3
        while self.agent.poll() is None:
            time.sleep(TICK)
            now = time.time()
            claimed = os.path.exists(os.path.join(self.agent_dir, "agent.json"))
            if not claimed and now - started > self.ttl:
                self.stop("no controller claimed the pod within %gs" % self.ttl)
            if now >= renew_at:
                renew_at = now + self.ttl / 3
                try:
                    lost = gpu_leases.renew(self.lease_dir, self.rid, self.slots, self.ttl, os.getpid())
                except OSError as exc:
                    lost, self.reason = self.slots, self.reason or "cannot renew leases: %s" % exc
                if lost:
                    self.stop("GPU lease of slot(s) %s was lost (expired and taken)" % lost)

    def finish(self) -> None:
        """Stop everything of the pod, give the leases back, record why, remove the pod directory."""
        if self.agent is not None:
            try:
                self.agent.wait(10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        kill_all(procs_under(self.pod_dir), 3.0)
        with contextlib.suppress(OSError):
            gpu_leases.give(self.lease_dir, self.rid)
        reason = self.reason or exit_reason(self.agent_dir) or ""
        exits = _exit_file(self.pod_dir)
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(exits), exist_ok=True)
            with open(exits, "w") as f:
                json.dump({"reason": reason or "agent exited", "time": time.time()}, f)
        shutil.rmtree(self.pod_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(self.pod_dir))


def _report(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, text.encode() + b"\n")
        os.close(fd)


def keep(pod_dir: str, lease_dir: str, rid: str, ttl: float, slots: List[int]) -> None:
    """Fork the keeper; return (exit 0) once its agent answers, or exit 1 saying why not."""
    keeper = Keeper(pod_dir, lease_dir, rid, ttl, slots)
    os.makedirs(keeper.agent_dir, mode=0o700, exist_ok=True)
    src = _zip_path()
    zip_path = os.path.join(keeper.agent_dir, os.path.basename(src))
    if not os.path.exists(zip_path):
        try:
            os.link(src, zip_path)
        except OSError:
            shutil.copyfile(src, zip_path)
    r, w = os.pipe()
    if os.fork():
        os.close(w)
        ready, _, _ = select.select([r], [], [], START_TIMEOUT + 15)
        answer = os.read(r, 4096).decode(errors="replace").strip() if ready else ""
        sys.stdout.write((answer or "error: the keeper did not report") + "\n")
        sys.exit(0 if answer.startswith("ok") else 1)
    os.close(r)
    os.setsid()
    log = os.open(os.path.join(pod_dir, "keeper.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    code = 0
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda s, f: keeper.stop("stopped by signal %d" % s))
        lost = gpu_leases.renew(lease_dir, rid, slots, ttl, os.getpid())
        if lost:
            raise RuntimeError("GPU lease of slot(s) %s was taken before the pod started" % lost)
        with open(os.path.join(pod_dir, "keeper.pid"), "w") as f:
            f.write(str(os.getpid()))
        keeper.start_agent(zip_path)
        _report(w, "ok %d" % (keeper.agent.pid if keeper.agent else 0))
        keeper.watch()
    except Exception as exc:  # report to the waiting parent, then clean up like any exit
        keeper.reason = str(exc)
        _report(w, "error: %s" % exc)
        code = 1
    finally:
        keeper.finish()
        os._exit(code)


def release(pod_dir: str, lease_dir: str, rid: str) -> Dict[str, Any]:
    """Stop the pod's keeper and agent, give its leases back, remove it; report what remains."""
    pid = 0
    with contextlib.suppress(OSError, ValueError), open(os.path.join(pod_dir, "keeper.pid")) as f:
        pid = int(f.read().strip())
    if pid and pid in procs_under(pod_dir):
        kill_all([pid], 15.0)  # the keeper stops its agent, kills leftovers and cleans up
    kill_all(procs_under(pod_dir), 3.0)
    with contextlib.suppress(OSError):
        gpu_leases.give(lease_dir, rid)
    shutil.rmtree(pod_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.unlink(_exit_file(pod_dir))
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(pod_dir))
    left = [s for s, lease in gpu_leases.read(lease_dir).items() if lease.get("reservation") == rid]
    return {"leases": left, "procs": procs_under(pod_dir)}


def pod_state(pod_dir: str, lease_dir: str, rid: str) -> Dict[str, Any]:
    """For reconcile: does the pod still hold leases and a keeper, and if not, why did it stop?"""
    now = time.time()
    live = [
        s
        for s, lease in gpu_leases.read(lease_dir).items()
        if lease.get("reservation") == rid and float(lease.get("expires", 0)) > now
    ]
    # The keeper's record once it has cleaned up; the agent's own while the pod is still ending.
    reason = (gpu_leases.read_json(_exit_file(pod_dir)) or {}).get("reason") or exit_reason(
        os.path.join(pod_dir, "agent")
    )
    return {"leases": live, "running": bool(procs_under(pod_dir)), "reason": reason}


def main(verb: str, argv: List[str]) -> None:
    if verb == "keep" and len(argv) == 5:
        slots = [int(s) for s in argv[4].split(",") if s]
        keep(argv[0], argv[1], argv[2], float(argv[3]), slots)
        return
    if verb in ("release", "pod") and len(argv) == 3:
        out = (release if verb == "release" else pod_state)(argv[0], argv[1], argv[2])
        sys.stdout.write(json.dumps(out) + "\n")
        return
    sys.stderr.write("usage: agent.pyz keep POD LEASES RID TTL SLOTS | release|pod POD LEASES RID\n")
    sys.exit(2)
