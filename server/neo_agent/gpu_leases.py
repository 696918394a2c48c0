"""GPU leases held on the host itself: how a team shares SSH hosts with no central server.

One file per GPU slot, ``LEASE_DIR/gpu<i>.lease``, holds JSON ``{reservation, owner, expires,
holder, host}``. A slot is free when it has no file or its lease has expired (its holder stopped
renewing: crashed, killed, host rebooted). Every change happens under ``flock(LEASE_DIR/.lock)``,
so two controllers racing for one host serialise there and exactly one gets each slot; files are
replaced atomically (write + rename), so a reader never sees half a lease.

Breaking a stale lease is safe because renewal is fenced: the keeper (``neo_agent.keeper``)
renews under the same lock and only a lease that still names its reservation; a keeper that finds
its lease taken stops its agent at once, so a slot never has two live users.

Verbs (``agent.pyz leases VERB ...``, each prints one JSON line):
``take DIR RID OWNER COUNT TOTAL TTL``, ``give DIR RID``, ``list DIR``, and
``inventory DIR`` (hostname, machine id, Python, nvidia-smi's GPUs and the leases, for placement).
"""

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Optional

LEASE_DIR = "/var/tmp/jupyter-neo-gpus"
UNREADABLE_TTL = 600.0  # a lease file that cannot be parsed counts as held this long after its mtime
SMI_QUERY = ["--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]


def _path(d: str, slot: int) -> str:
    return os.path.join(d, "gpu%d.lease" % slot)


@contextlib.contextmanager
def locked(d: str) -> Iterator[None]:
    """The host-wide lock of the lease directory (created shared: the whole team writes here)."""
    if not os.path.isdir(d):
        os.makedirs(d, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(d, 0o777)  # noqa: S103 (shared by the team: anyone may break a stale lease)
    lock = os.path.join(d, ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read(d: str) -> Dict[int, Dict[str, Any]]:
    """Every lease file in ``d`` by slot (expired ones included)."""
    out: Dict[int, Dict[str, Any]] = {}
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for name in names:
        if not (name.startswith("gpu") and name.endswith(".lease") and name[3:-6].isdigit()):
            continue
        path = os.path.join(d, name)
        try:
            with open(path) as f:
                lease = json.load(f)
            if not isinstance(lease, dict):
                raise ValueError("not a mapping")
        except (OSError, ValueError):
            try:
                lease = {"reservation": "?", "owner": "?", "expires": os.stat(path).st_mtime + UNREADABLE_TTL}
            except OSError:
                continue
        out[int(name[3:-6])] = lease
    return out


def read_json(path: str) -> Optional[Dict[str, Any]]:
    """A small JSON file written by this package, or None when missing or unreadable."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(d: str, slot: int, lease: Dict[str, Any]) -> None:
    tmp = os.path.join(d, ".gpu%d.%d.tmp" % (slot, os.getpid()))
    with open(tmp, "w") as f:
        json.dump(lease, f)
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o644)
    os.replace(tmp, _path(d, slot))


def _live(lease: Optional[Dict[str, Any]], now: float) -> bool:
    return lease is not None and float(lease.get("expires", 0)) > now


def take(d: str, rid: str, *, owner: str, count: int, total: int, ttl: float) -> Dict[str, Any]:
    """Lease ``count`` of slots ``0..total-1`` for ``rid``, all or none; expired leases are broken."""
    with locked(d):
        now = time.time()
        held = read(d)
        free = [
            s
            for s in range(total)
            if held.get(s, {}).get("reservation") == rid or not _live(held.get(s), now)
        ]
        if len(free) < count:
            return {"ok": False, "free": len(free), "holders": holders(held, now)}
        slots = free[:count]
        broken = [held[s] for s in slots if s in held and held[s].get("reservation") != rid]
        for slot in slots:
            _write(
                d,
                slot,
                {
                    "reservation": rid,
                    "owner": owner,
                    "expires": now + ttl,
                    "holder": os.getpid(),
                    "host": socket.gethostname(),
                    "since": now,
                },
            )
        return {"ok": True, "slots": slots, "broken": [b.get("reservation") for b in broken]}


def renew(d: str, rid: str, slots: List[int], ttl: float, holder: int) -> List[int]:
    """Push the expiry of ``rid``'s leases; returns the slots that are no longer ours (fencing)."""
    lost = []
    with locked(d):
        now = time.time()
        held = read(d)
        for slot in slots:
            lease = held.get(slot)
            if lease is None or lease.get("reservation") != rid:
                lost.append(slot)
                continue
            lease.update(expires=now + ttl, holder=holder)
            _write(d, slot, lease)
    return lost


def give(d: str, rid: str) -> int:
    """Remove every lease of ``rid`` on this host; returns how many there were."""
    with locked(d):
        mine = [s for s, lease in read(d).items() if lease.get("reservation") == rid]
        for slot in mine:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_path(d, slot))
    return len(mine)


def holders(held: Dict[int, Dict[str, Any]], now: float) -> List[Dict[str, Any]]:
    """Live leases grouped by reservation: who holds which slots, and for how long yet."""
    by: Dict[str, Dict[str, Any]] = {}
    for slot, lease in sorted(held.items()):
        if not _live(lease, now):
            continue
        rid = str(lease.get("reservation"))
        entry = by.setdefault(
            rid, {"reservation": rid, "owner": str(lease.get("owner", "?")), "slots": [], "expires_in": 0.0}
        )
        entry["slots"].append(slot)
        entry["expires_in"] = round(max(entry["expires_in"], float(lease.get("expires", 0)) - now), 1)
    return list(by.values())


def nvidia_gpus() -> Dict[str, Any]:
    """GPUs as ``nvidia-smi --query-gpu`` reports them; ``gpus`` is None when there is no nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"gpus": None}
    try:
        done = subprocess.run(
            [exe, *SMI_QUERY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"gpus": [], "smi_error": str(exc)}
    if done.returncode != 0:
        text = (done.stderr or done.stdout).decode(errors="replace").strip()
        return {"gpus": [], "smi_error": text[-300:] or "exit status %d" % done.returncode}
    rows = [
        [c.strip() for c in line.split(",")] for line in done.stdout.decode(errors="replace").splitlines()
    ]
    return {"gpus": [{"index": int(r[0]), "name": r[1]} for r in rows if len(r) >= 2 and r[0].isdigit()]}


def inventory(d: str) -> Dict[str, Any]:
    """What placement needs to know about this host, in one round trip."""
    machine_id = ""
    with contextlib.suppress(OSError), open("/etc/machine-id") as f:
        machine_id = f.read().strip()
    conn = (os.environ.get("SSH_CONNECTION") or "").split()
    now = time.time()
    return dict(
        nvidia_gpus(),
        hostname=socket.gethostname(),
        machine_id=machine_id,
        python=sys.version.split()[0],
        address=conn[2] if len(conn) >= 3 else "",
        holders=holders(read(d), now),
    )


def main(argv: List[str]) -> None:
    verb, args = (argv[0], argv[1:]) if argv else ("", [])
    if verb == "take" and len(args) == 6:
        out: Any = take(
            args[0], args[1], owner=args[2], count=int(args[3]), total=int(args[4]), ttl=float(args[5])
        )
    elif verb == "give" and len(args) == 2:
        out = {"given": give(args[0], args[1])}
    elif verb == "list" and len(args) == 1:
        out = {"holders": holders(read(args[0]), time.time())}
    elif verb == "inventory" and len(args) == 1:
        out = inventory(args[0])
    else:
        sys.stderr.write("usage: agent.pyz leases take|give|list|inventory DIR ...\n")
        sys.exit(2)
    sys.stdout.write(json.dumps(out) + "\n")
