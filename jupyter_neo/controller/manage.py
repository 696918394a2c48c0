"""``neo daemon status|stop|logs``: see and manage the resident controller (stdlib only)."""

from __future__ import annotations

import json
import os
import sys
import time

from jupyter_neo.controller import client, wire

USAGE = "usage: neo daemon {status,stop,logs} [--json] [--tail N]"


def main(argv: list[str]) -> int:
    verb = argv[0] if argv else ""
    flags = argv[1:]
    if verb not in ("status", "stop", "logs") or any(
        f not in ("--json", "--tail") and not f.isdigit() for f in flags
    ):
        sys.stderr.write(f"error: {USAGE}\n")
        return 2
    home = client.home_dir()
    try:
        if verb == "status":
            return status(home, "--json" in flags)
        if verb == "stop":
            return stop(home, "--json" in flags)
        tail = int(flags[flags.index("--tail") + 1]) if "--tail" in flags[:-1] else 50
        return logs(home, tail)
    except client.Refused as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1


def status(home: str, as_json: bool) -> int:
    try:
        doc = client.request(home, {"type": "status"})
    except client.Unavailable:
        doc = {"running": False, "home": home}
        if as_json:
            print(json.dumps(doc, indent=2))
        else:
            print(f"controller: not running for {home} (the next neo command starts one)")
        return 3
    doc.pop("type", None)
    if as_json:
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"controller: running, pid {doc['pid']}, up {doc['uptime_s']:.0f}s, protocol {doc['protocol']}, "
        f"home {doc['home']}"
    )
    print(
        f"  requests in flight: {doc['requests']}; event subscribers (Jupyter servers): "
        f"{doc.get('subscribers', 0)}; exits after {doc['idle_exit_s']:.0f}s idle "
        "with no live reservation"
    )
    for res in doc["reservations"]:
        print(
            f"  {res['id']} ({res['state']}): {res['warm']}/{res['pods']} warm agent connection(s), "
            f"{res['trackers']} change tracker(s)"
        )
    print(f"  log: {os.path.join(home, wire.LOG)}")
    return 0


def stop(home: str, as_json: bool) -> int:
    """Ask the controller to exit (reservations stay; the next command starts a new one)."""
    try:
        doc = client.request(home, {"type": "stop"})
    except client.Unavailable:
        print(json.dumps({"stopped": False}) if as_json else "controller: not running")
        return 0
    pid = int(doc["pid"])
    deadline = time.monotonic() + 30
    while client.controller_pid(home) == pid and time.monotonic() < deadline:
        time.sleep(0.02)
    print(json.dumps({"stopped": True, "pid": pid}) if as_json else f"stopped controller (pid {pid})")
    return 0


def logs(home: str, tail: int) -> int:
    path = os.path.join(home, wire.LOG)
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        sys.stderr.write(f"no controller log at {path} yet\n")
        return 0
    for line in lines[-tail:] if tail else lines:
        print(line)
    return 0
