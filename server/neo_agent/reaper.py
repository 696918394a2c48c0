"""Every process a run starts stays the run's, whatever it does to its session or environment.

A process group or a session is no boundary: a rank that double-forks and calls ``setsid`` leaves
both, and one that also clears its environment loses ``NEO_PROC_TAG``. Two mechanisms that a
process cannot leave by itself keep it reachable:

- **cgroup v2** (where the agent may write its own part of the hierarchy): each launcher is moved
  into ``<agent's cgroup>/neo-agent-<pid>/<proc>`` before it executes, so every descendant is born
  there; ``cgroup.kill`` (or, before Linux 5.14, freezing and killing every member) ends them all
  atomically, even ones forking at that moment.
- **Child subreapers** (always on, stdlib ``prctl`` through ctypes): the agent and every launcher
  are subreapers, so an orphaned descendant is adopted by its launcher while the launcher lives
  (it stays in the launcher's process tree, where a kill finds it) and by the agent afterwards
  (where the agent kills it: nothing the agent did not start itself belongs there).

The agent starts each launcher in a new session; helpers it runs for itself (``nvidia-smi``) stay
in the agent's own session. A process cannot join a session it was not born in, so "a child of
the agent in another session that is not a live launcher" is exactly an adopted orphan.
"""

import ctypes
import errno
import os
import re
import signal
import time
from typing import Callable, Iterable, List, Optional, Set

PR_SET_CHILD_SUBREAPER = 36
CGROUP_ENV = "NEO_AGENT_CGROUP"
"""``off`` disables the cgroup mechanism (tests exercise the subreaper path alone with it)."""

_prctl: Optional[Callable[..., int]] = None
try:  # loaded before any fork: the child only calls an already resolved function
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux, or no prctl in the C library
    _prctl = None


def set_subreaper() -> bool:
    """Make this process adopt orphaned descendants (Linux >= 3.4); False where unsupported."""
    if _prctl is None:
        return False
    one, zero = ctypes.c_ulong(1), ctypes.c_ulong(0)
    return _prctl(PR_SET_CHILD_SUBREAPER, one, zero, zero, zero) == 0


# ------------------------------------------------------------------------- process table
def _stat(pid: int) -> Optional[List[str]]:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, session, ...)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rfind(")") + 2 :].split()


def session_of(pid: int) -> Optional[int]:
    fields = _stat(pid)
    return int(fields[3]) if fields else None


def children(pid: int) -> Set[int]:
    """Direct children of ``pid`` (``/proc/PID/task/*/children``, else a scan of the table)."""
    found: Set[int] = set()
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return found
    readable = False
    for tid in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                found.update(int(c) for c in f.read().split())
            readable = True
        except (OSError, ValueError):
            continue
    if readable:
        return found
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and int(fields[1]) == pid:
                found.add(int(entry))
    return found


def descendants(roots: Iterable[int]) -> Set[int]:
    """Every live process below ``roots`` (not the roots themselves)."""
    seen: Set[int] = set()
    todo = list(roots)
    while todo:
        for child in children(todo.pop()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def kill_tree(root: int, sig: int = signal.SIGKILL, include_root: bool = True) -> bool:
    """Signal ``root`` and everything below it; repeats while new processes appear (fork races)."""
    hit = False
    for _ in range(20):
        found = descendants([root])
        if include_root:
            found.add(root)
        live = [pid for pid in found if _alive(pid)]
        if not live:
            break
        for pid in live:
            try:
                os.kill(pid, sig)
                hit = True
            except OSError:
                pass
        if sig != signal.SIGKILL:
            break
        time.sleep(0.005)
    return hit


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def adopted_orphans(launchers: Set[int]) -> List[int]:
    """Children of this agent in another session that are not live launchers (see module doc)."""
    me = os.getpid()
    mine = session_of(me)
    out = []
    for pid in children(me):
        if pid in launchers:
            continue
        sid = session_of(pid)
        if sid is not None and sid != mine:
            out.append(pid)
    return out


def reap_orphans(launchers: Set[int]) -> int:
    """Kill adopted orphans and collect their exit status (nobody else waits for them)."""
    count = 0
    for pid in adopted_orphans(launchers):
        if _alive(pid):
            kill_tree(pid)
            count += 1
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return count


# ------------------------------------------------------------------------- cgroup v2
def _cgroup2_mount() -> Optional[str]:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        pass
    return None


def _own_cgroup() -> Optional[str]:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


class Cgroups:
    """The agent's own subtree of the cgroup v2 hierarchy: one child group per launcher."""

    def __init__(self, root: str) -> None:
        self.root = root

    @classmethod
    def open(cls) -> "Optional[Cgroups]":
        """The agent's subtree, or None where cgroup v2 is missing, read-only or not delegated."""
        if os.environ.get(CGROUP_ENV, "").lower() in ("off", "0", "no", "false"):
            return None
        mount, own = _cgroup2_mount(), _own_cgroup()
        if mount is None or own is None:
            return None
        parent = os.path.join(mount, own.lstrip("/"))
        _remove_stale(parent)
        root = os.path.join(parent, "neo-agent-%d" % os.getpid())
        try:
            os.mkdir(root, 0o755)
            probe = os.path.join(root, "probe")
            os.mkdir(probe)
            writable = os.access(os.path.join(probe, "cgroup.procs"), os.W_OK)
            os.rmdir(probe)
        except OSError:
            return None
        if not writable:
            remove(root)
            return None
        return cls(root)

    def create(self, name: str) -> Optional[str]:
        path = os.path.join(self.root, re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100])
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        except OSError:
            return None
        return path

    def close(self) -> None:
        for entry in os.listdir(self.root) if os.path.isdir(self.root) else []:
            path = os.path.join(self.root, entry)
            if os.path.isdir(path):
                kill(path)
                remove(path)
        remove(self.root)


def _remove_stale(parent: str) -> None:
    """Remove empty groups left by agents that were killed outright (rmdir fails on busy ones)."""
    try:
        entries = os.listdir(parent)
    except OSError:
        return
    for entry in entries:
        match = re.match(r"neo-agent-(\d+)$", entry)
        if match is None or _alive(int(match.group(1))):
            continue
        root = os.path.join(parent, entry)
        for child in os.listdir(root) if os.path.isdir(root) else []:
            if os.path.isdir(os.path.join(root, child)):
                remove(os.path.join(root, child), wait=0)
        remove(root, wait=0)


def enter(path: str) -> None:
    """Move the calling process into cgroup ``path`` (run in the child between fork and exec)."""
    fd = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)


def members(path: str) -> List[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def kill(path: str) -> bool:
    """SIGKILL every process in cgroup ``path`` and its children groups; True if any was there."""
    had = bool(members(path))
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
        return had
    except OSError as exc:
        if exc.errno == errno.ENOENT and not os.path.isdir(path):
            return False
    # Linux < 5.14: freeze, so nothing forks while the members are listed, then kill them all.
    freeze = os.path.join(path, "cgroup.freeze")
    try:
        with open(freeze, "w") as f:
            f.write("1")
    except OSError:
        pass
    for pid in members(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        with open(freeze, "w") as f:
            f.write("0")
    except OSError:
        pass
    return had


def remove(path: str, wait: float = 2.0) -> bool:
    """rmdir a cgroup once its killed members are gone (they leave it asynchronously)."""
    end = time.monotonic() + wait
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= end:
                return False
            time.sleep(0.02)


def kill_recorded(agent_dir: str) -> bool:
    """Kill what a (possibly dead) agent's cgroups still hold, from the path it recorded."""
    try:
        with open(os.path.join(agent_dir, "cgroup")) as f:
            root = f.read().strip()
    except OSError:
        return False
    if not root or not os.path.isdir(root):
        return False
    hit = False
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        if os.path.isdir(path):
            hit = kill(path) or hit
            remove(path)
    remove(root)
    return hit
