"""GPU leases and the keeper on one machine: real files, real flock, real racing processes.

The same code runs on every SSH host (it ships in the agent zip); here it runs locally, so its
guarantees are checked without a fleet: each slot goes to exactly one of many racing takers, a
stale lease is broken and its late holder fenced, and a keeper gives everything back by itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from neo_agent import gpu_leases

from jupyter_neo.transport.bundle import INSTALL, agent_bundle
from tests.slurm_support import live_procs_mentioning, wait_for

TAKE = """
import json, sys
from neo_agent import gpu_leases
print(json.dumps(gpu_leases.take(sys.argv[1], sys.argv[2], owner="u", count=3, total=8, ttl=60)))
"""


def test_racing_processes_get_each_slot_exactly_once(tmp_path: Path) -> None:
    """Twelve processes each want 3 of 8 slots at once: exactly two win, no slot is shared."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TAKE, str(tmp_path), f"r-{i}"], stdout=subprocess.PIPE, text=True
        )
        for i in range(12)
    ]
    answers = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    winners = [a for a in answers if a["ok"]]
    assert len(winners) == 2
    slots = [s for a in winners for s in a["slots"]]
    assert len(slots) == len(set(slots)) == 6
    on_disk = gpu_leases.read(str(tmp_path))
    assert sorted(on_disk) == sorted(slots)
    assert {lease["reservation"] for lease in on_disk.values()} == {
        f"r-{i}" for i, a in enumerate(answers) if a["ok"]
    }
    assert all(a["free"] == 2 for a in answers if not a["ok"])


def test_a_stale_lease_is_broken_and_its_late_holder_is_fenced(tmp_path: Path) -> None:
    d = str(tmp_path)
    first = gpu_leases.take(d, "r-old", owner="a", count=8, total=8, ttl=0.2)
    assert first["ok"]
    assert not gpu_leases.take(d, "r-new", owner="b", count=1, total=8, ttl=60)["ok"]
    time.sleep(0.3)
    second = gpu_leases.take(d, "r-new", owner="b", count=2, total=8, ttl=60)
    assert second == {"ok": True, "slots": [0, 1], "broken": ["r-old", "r-old"]}
    # the old holder wakes up: the slots it lost are reported, the others renewed
    assert gpu_leases.renew(d, "r-old", list(range(8)), 60, 1) == [0, 1]
    assert gpu_leases.give(d, "r-old") == 6
    assert sorted(gpu_leases.read(d)) == [0, 1]


def _keep(
    tmp_path: Path, rid: str, ttl: float, slots: str
) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    bundle = agent_bundle()
    base, leases = tmp_path / "pods", tmp_path / "leases"
    pod = base / rid / "host1"
    argv = [sys.executable, "-c", INSTALL, str(base), bundle.digest, "keep", str(pod), str(leases), rid]
    done = subprocess.run(
        [*argv, str(ttl), slots], input=bundle.data, capture_output=True, timeout=60, check=False
    )
    return (
        pod,
        leases,
        subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode()),
    )


def test_an_unclaimed_pod_stops_and_gives_its_leases_back_within_the_ttl(tmp_path: Path) -> None:
    """A controller killed between lease and claim: the keeper frees the host by itself."""
    taken = gpu_leases.take(str(tmp_path / "leases"), "r-1", owner="a", count=2, total=8, ttl=3)
    assert taken["ok"]
    pod, leases, done = _keep(tmp_path, "r-1", 3, "0,1")
    assert done.returncode == 0 and done.stdout.startswith("ok"), done
    assert live_procs_mentioning(str(pod))
    wait_for(lambda: not gpu_leases.read(str(leases)), 15, "the keeper to give the leases back")
    wait_for(lambda: not live_procs_mentioning(str(pod)), 10, "the keeper and agent to exit")
    assert not pod.exists()
    record = json.loads((tmp_path / "pods" / ".exits" / "r-1.host1.json").read_text())
    assert "no controller claimed" in record["reason"]


def test_a_keeper_whose_lease_was_taken_stops_its_agent(tmp_path: Path) -> None:
    d = str(tmp_path / "leases")
    assert gpu_leases.take(d, "r-1", owner="a", count=1, total=1, ttl=30)["ok"]
    pod, _leases, done = _keep(tmp_path, "r-1", 30, "0")
    assert done.returncode == 0, done
    # someone else's lease replaces ours (as after an expiry while this host was frozen)
    (tmp_path / "leases" / "gpu0.lease").write_text(
        json.dumps({"reservation": "r-2", "owner": "b", "expires": 1e12})
    )
    wait_for(lambda: not live_procs_mentioning(str(pod)), 30, "the fenced pod to stop")
    record = json.loads((tmp_path / "pods" / ".exits" / "r-1.host1.json").read_text())
    assert "lost" in record["reason"]
    assert gpu_leases.read(d)[0]["reservation"] == "r-2", "the new holder's lease is untouched"


def test_release_stops_the_keeper_and_reports_nothing_left(tmp_path: Path) -> None:
    assert gpu_leases.take(str(tmp_path / "leases"), "r-1", owner="a", count=4, total=8, ttl=30)["ok"]
    pod, leases, done = _keep(tmp_path, "r-1", 30, "0,1,2,3")
    assert done.returncode == 0, done
    bundle = agent_bundle()
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            INSTALL,
            str(tmp_path / "pods"),
            bundle.digest,
            "release",
            str(pod),
            str(leases),
            "r-1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout) == {"leases": [], "procs": []}
    assert not gpu_leases.read(str(leases)) and not pod.exists()
    assert not live_procs_mentioning(str(pod))
