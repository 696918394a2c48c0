"""SSH fleets end to end: real sshd hosts in network namespaces, reached through a generated
ssh_config (Host aliases, one ProxyJump host), GPU leases in files on the hosts, through the CLI.

Two "users" are two sandboxes (own NEO_HOME, own NEO_OWNER) sharing the fleet, as a team does.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo, read_until
from tests.engines.ssh.harness import SshFleet
from tests.slurm_support import live_procs_mentioning, wait_for
from tests.ssh_support import assert_nothing_left, held_by, use_fleet
from tests.test_hot_reload import TRAIN, helper
from tests.test_hot_reload import run as hot_run

pytest_plugins = ["tests.engines.ssh.conftest_fixture"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train_ddp.py"


@pytest.fixture
def pods(ssh_fleet: SshFleet, tmp_path: Path) -> Iterator[Path]:
    """This test's pod directory on the hosts; every host's leases start empty."""
    for host in ("gpu1", "gpu2", "gpu3", "gpu1-fewgpus", "gpu2-nopython"):
        for path in ssh_fleet.lease_dir(host).glob("gpu*.lease"):
            path.unlink()
    yield tmp_path / "pods"


@pytest.fixture
def bob(tmp_path: Path) -> Neo:
    """A second user of the same fleet: own state store, own name."""
    home = tmp_path / "bob"
    env = dict(os.environ, NEO_HOME=str(home), NEO_OWNER="bob", PYTHONUNBUFFERED="1")
    return Neo(home=home, config=tmp_path / "bob.yaml", env=env)


def workspace(tmp_path: Path, files: dict[str, str]) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    for name, text in files.items():
        (ws / name).write_text(text)
    return ws


def live_leases(fleet: SshFleet) -> list[str]:
    """Leases on any host that have not expired, read from the files themselves."""
    now = time.time()
    return [
        f"{host}:{slot}"
        for host, leases in fleet.all_leases().items()
        for slot, lease in leases.items()
        if lease["expires"] > now
    ]


def _release_all(*users: Neo) -> None:
    for user in users:
        if user.config.exists():
            user.run("release", "--all", timeout=120)


def test_gang_places_around_another_users_gpus_and_neo_clusters_shows_who_holds_them(
    neo: Neo, bob: Neo, ssh_fleet: SshFleet, pods: Path
) -> None:
    """bob holds 4 GPUs of gpu1; alice's 2 x 4 gang takes the other 4 of gpu1 plus gpu2 (4 + 4 on
    one 8-GPU host, each seeing only its own slots); release leaves no lease and no process."""
    neo.env["NEO_OWNER"] = "alice"
    use_fleet(neo, ssh_fleet, pods, ["gpu1", "gpu2", "gpu3"])
    use_fleet(bob, ssh_fleet, pods, ["gpu1", "gpu2", "gpu3"])
    try:
        theirs: Any = bob.json("reserve", "--gpus", "4")
        assert [p["name"].rsplit("-", 1)[1] for p in theirs["pods"]] == ["gpu1"]
        assert held_by(ssh_fleet, theirs["id"]) == {"gpu1": [0, 1, 2, 3]}

        ours: Any = neo.json("reserve", "--gpus", "8", "--nodes", "2")
        assert ours["state"] == "ready"
        assert held_by(ssh_fleet, ours["id"]) == {"gpu1": [4, 5, 6, 7], "gpu2": [0, 1, 2, 3]}
        assert [p["address"] for p in ours["pods"]] == ["10.247.0.11", "10.247.0.12"]
        lease = ssh_fleet.leases("gpu1")[4]
        assert lease["owner"] == "alice" and lease["host"] == "gpu1" and lease["expires"] > time.time()

        seen = neo.run(
            "run", "-r", ours["id"], "--ranks", "all", "--cmd", "printenv CUDA_VISIBLE_DEVICES", check=True
        )
        assert "4,5,6,7" in seen.stdout and "0,1,2,3" in seen.stdout, seen.stdout

        clusters: Any = neo.json("clusters")
        hosts = {h["name"]: h for h in clusters[0]["hosts"]}
        assert clusters[0]["free_gpus"] == 24 - 12
        assert hosts["gpu1"]["free"] == 0 and hosts["gpu3"]["free"] == 8
        assert sorted((h["owner"], h["gpus"]) for h in hosts["gpu1"]["held"]) == [
            ("alice", [4, 5, 6, 7]),
            ("bob", [0, 1, 2, 3]),
        ]
        assert hosts["gpu1"]["gpu_model"] == "NVIDIA H100 80GB HBM3"
        assert hosts["gpu3"]["gpu_model"] is None  # no nvidia-smi there: GPUs from the config
        table = neo.run("clusters", check=True).stdout
        assert "gpu1" in table and "bob" in table and "alice" in table

        neo.run("release", ours["id"], check=True)
        assert held_by(ssh_fleet, ours["id"]) == {}
        assert held_by(ssh_fleet, theirs["id"]) == {"gpu1": [0, 1, 2, 3]}  # bob's untouched
        bob.run("release", theirs["id"], check=True)
        assert_nothing_left(ssh_fleet, pods)
    finally:
        _release_all(neo, bob)


def test_racing_reserves_for_overlapping_hosts_yield_exactly_one_gang(
    neo: Neo, bob: Neo, ssh_fleet: SshFleet, pods: Path
) -> None:
    """Two users ask for 16 of the fleet's 24 GPUs at once (gpu3 behind the jump host): one wins
    every slot it needs, the other gets a clear NoCapacity holding nothing; nobody hangs."""
    for user in (neo, bob):
        use_fleet(user, ssh_fleet, pods, ["gpu1", "gpu2", "gpu3"])
    try:
        procs = [user.popen("reserve", "--gpus", "16", "--json") for user in (neo, bob)]
        outs = [p.communicate(timeout=180) for p in procs]
        codes = [p.returncode for p in procs]
        assert sorted(codes) == [0, 1], (codes, outs)
        winner = json.loads(outs[codes.index(0)][0])
        loser_err = outs[codes.index(1)][1]
        assert "GPU(s) free" in loser_err or "took the free GPUs" in loser_err, loser_err
        assert "Traceback" not in loser_err
        held = held_by(ssh_fleet, winner["id"])
        assert sum(len(s) for s in held.values()) == 16 and all(len(s) == 8 for s in held.values())
        every = [
            lease["reservation"] for leases in ssh_fleet.all_leases().values() for lease in leases.values()
        ]
        assert set(every) == {winner["id"]}, "the loser kept a lease"
    finally:
        _release_all(neo, bob)
    assert_nothing_left(ssh_fleet, pods)


def test_sync_and_torchrun_ddp_across_two_hosts(
    neo: Neo, ssh_fleet: SshFleet, pods: Path, tmp_path: Path
) -> None:
    use_fleet(neo, ssh_fleet, pods, ["gpu1", "gpu2"])
    ws = workspace(tmp_path, {"train_ddp.py": EXAMPLE.read_text()})
    try:
        res: Any = neo.json("reserve", "--gpus", "2", "--nodes", "2")
        proc = neo.run(
            "run", "-r", res["id"], "--ranks", "all", "train_ddp.py", "--steps", "2", cwd=ws, timeout=200
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "ranks agree: True" in proc.stdout
        assert "[node 1 rank 1]" in proc.stdout
        run: Any = neo.json("runs")
        assert run[0]["master"].startswith("10.247.0.11:")
        neo.run("release", res["id"], check=True)
    finally:
        _release_all(neo)
    assert_nothing_left(ssh_fleet, pods)


def test_hot_reload_reaches_both_hosts_in_the_same_processes(
    neo: Neo, ssh_fleet: SshFleet, pods: Path, tmp_path: Path
) -> None:
    use_fleet(neo, ssh_fleet, pods, ["gpu1", "gpu2"])
    ws = workspace(tmp_path, {"train.py": TRAIN, "helper.py": helper("1.0")})
    try:
        res: Any = neo.json("reserve", "--gpus", "2", "--nodes", "2")
        code, first, err = hot_run(neo, res["id"], ws)
        assert code == 0 and "cold start" in err, err
        assert {r["value"] for r in first.values()} == {"2.0"}
        (ws / "helper.py").write_text(helper("5.0"))
        code, second, err = hot_run(neo, res["id"], ws)
        assert code == 0 and "hot: iteration 2" in err, err
        assert {r["value"] for r in second.values()} == {"10.0"}
        assert {r["pid"] for r in second.values()} == {r["pid"] for r in first.values()}
        neo.run("release", res["id"], check=True)
    finally:
        _release_all(neo)
    assert_nothing_left(ssh_fleet, pods)


def test_killed_controller_leases_expire_after_the_ttl(neo: Neo, ssh_fleet: SshFleet, pods: Path) -> None:
    """kill -9 of ``neo reserve`` once it holds leases: with no controller and no command run, the
    hosts free the slots by themselves within the lease TTL (keeper or plain expiry)."""
    use_fleet(neo, ssh_fleet, pods, ["gpu1", "gpu2"], lease_ttl="6s")
    proc = neo.popen("reserve", "--gpus", "16")
    try:
        wait_for(lambda: len(ssh_fleet.leases("gpu1")) == 8, 60, "the gang's first leases")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = time.monotonic()
        wait_for(lambda: not live_leases(ssh_fleet), 40, "the leases to expire or be given back")
        assert time.monotonic() - killed_at < 30
        wait_for(lambda: not live_procs_mentioning(str(pods)), 20, "the pods' processes to exit")
        # the next command rolls the orphaned record back; the GPUs are usable again
        assert neo.json("status") == []
        again: Any = neo.json("reserve", "--gpus", "16")
        assert again["state"] == "ready"
        neo.run("release", again["id"], check=True)
    finally:
        if proc.poll() is None:
            proc.kill()
        _release_all(neo)
    assert_nothing_left(ssh_fleet, pods)


def test_idle_pods_stop_and_free_their_gpus_with_no_controller(
    neo: Neo, ssh_fleet: SshFleet, pods: Path
) -> None:
    """The agents enforce the idle TTL, the keepers give the leases back: nothing of jupyter-neo runs
    on this side meanwhile. The next command reports why the reservation ended."""
    use_fleet(neo, ssh_fleet, pods, ["gpu1", "gpu3"])
    res: Any = neo.json("reserve", "--gpus", "16", "--idle-ttl", "3s")
    assert held_by(ssh_fleet, res["id"]) == {"gpu1": list(range(8)), "gpu3": list(range(8))}
    wait_for(lambda: not held_by(ssh_fleet, res["id"]), 60, "the idle pods to give their leases back")
    wait_for(lambda: not live_procs_mentioning(str(pods)), 20, "the pods' processes to exit")
    after: Any = neo.json("status", res["id"])
    assert after["state"] == "released" and "idle for more than 3" in after["reason"], after
    assert_nothing_left(ssh_fleet, pods)


def test_a_host_that_goes_away_mid_run_fails_the_run_naming_it(
    neo: Neo, ssh_fleet: SshFleet, pods: Path
) -> None:
    use_fleet(neo, ssh_fleet, pods, ["gpu1", "gpu2"])
    res: Any = neo.json("reserve", "--gpus", "2", "--nodes", "2")
    run = neo.popen("run", "-r", res["id"], "--ranks", "all", "--cmd", "sh -c 'echo started; exec sleep 600'")
    try:
        read_until(run.stdout, "started", count=2)
        ssh_fleet.link("gpu2", up=False)
        _out, err = run.communicate(timeout=120)
        assert run.returncode != 0
        assert "gpu2" in err and "Traceback" not in err, err
        assert "gpu1" not in err.split("gpu2")[0].splitlines()[-1]
    finally:
        ssh_fleet.link("gpu2", up=True)
        if run.poll() is None:
            run.kill()
        _release_all(neo)
    assert_nothing_left(ssh_fleet, pods)


@pytest.mark.parametrize(
    ("host", "extra", "words"),
    [
        ("gone", {}, ["host gone", "unreachable"]),
        ("gpu2-badkey", {}, ["host gpu2-badkey", "host key mismatch"]),
        ("gpu1", {"user": "nosuchuser"}, ["host gpu1 (nosuchuser@gpu1)", "authentication refused"]),
        ("gpu2-nopython", {"python": "python3"}, ["host gpu2-nopython", "python3 is not on the host"]),
        ("gpu1-fewgpus", {"python": "python3"}, ["host gpu1-fewgpus", "nvidia-smi reports 2 GPU(s)"]),
    ],
)
def test_bad_hosts_fail_in_one_line_naming_the_host_and_hold_nothing(
    neo: Neo, ssh_fleet: SshFleet, pods: Path, host: str, extra: dict[str, str], words: list[str]
) -> None:
    use_fleet(neo, ssh_fleet, pods, [host], **extra)
    proc = neo.run("reserve", "--gpus", "8", timeout=120)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and all(w in errors[0] for w in words), proc.stderr
    assert "Traceback" not in proc.stderr
    assert neo.json("status") == []
    assert_nothing_left(ssh_fleet, pods)
