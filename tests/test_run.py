"""``neo run`` with real torchrun and torch.distributed (gloo on CPU) on a local 2 x 2 gang."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_neo.runs.supervisor import STOPPED
from tests.conftest import Neo, read_until

pytest.importorskip("torch")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.slow


@pytest.fixture
def gang(neo: Neo, tmp_path: Path) -> Iterator[tuple[Neo, str, Path]]:
    """A warm 2-node x 2-GPU reservation and a workspace holding the example DDP script."""
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(EXAMPLES / "train_ddp.py", ws / "train_ddp.py")
    res: Any = neo.json("reserve", "--gpus", "4", "--nodes", "2")
    yield neo, res["id"], ws
    neo.run("release", "--all")


def workers(neo: Neo) -> list[str]:
    """Live processes of the sandbox other than the resident agents."""
    return [p for p in neo.processes() if " serve " not in p]


def test_ddp_step_completes_and_all_ranks_agree(gang: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = gang
    proc = neo.run("run", "-r", rid, "--ranks", "all", "train_ddp.py", "--steps", "5", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "ranks agree" in line]
    assert len(lines) == 4
    assert all("ranks agree: True" in line for line in lines)
    checksums = {line.split("checksum ")[1].split()[0] for line in lines}
    assert len(checksums) == 1, "every rank holds the same weights after all-reduce"
    assert {line.split("]")[0] for line in lines} == {
        "[node 0 rank 0",
        "[node 0 rank 1",
        "[node 1 rank 2",
        "[node 1 rank 3",
    }

    runs: Any = neo.json("runs")
    run = runs[0]
    assert run["state"] == "succeeded" and run["exit_code"] == 0
    assert [r["exit_code"] for r in run["ranks"]] == [0, 0, 0, 0]
    for r in run["ranks"]:
        log = Path(r["log"]).read_text()
        assert "first step done" in log and f"rank {r['rank']}/4" in log, "each rank's log is complete"
    logs = neo.run("logs", run["id"], "--rank", "3", check=True)
    assert "rank 3/4" in logs.stdout
    assert workers(neo) == [], "no process survives a finished run"


def test_failing_rank_stops_the_gang_and_shows_its_traceback(gang: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = gang
    t0 = time.monotonic()
    proc = neo.run("run", "-r", rid, "train_ddp.py", "--steps", "40", "--fail-rank", "3", cwd=ws)
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 60, "no 300 s torchrun exit barrier"
    assert "rank 3 failed on purpose" in proc.stderr
    assert "rank 3 on node 1" in proc.stderr
    run: Any = neo.json("runs")
    assert run[0]["state"] == "failed" and run[0]["failed_rank"] == 3
    # The culprit's traceback starts in the user's script, not in the agent's rank entry or runpy.
    assert 'File "train_ddp.py"' in run[0]["error"] or 'train_ddp.py", line' in run[0]["error"]
    assert "runpy" not in run[0]["error"] and "neo_agent/rank.py" not in run[0]["error"]
    assert workers(neo) == []


def spin(neo: Neo, rid: str, ws: Path) -> subprocess.Popen[str]:
    """``neo run`` of four ranks that joined a process group and then sleep; returns once all print."""
    (ws / "spin.py").write_text(
        "import time, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "print('spinning', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = neo.popen("run", "-r", rid, "--ranks", "all", "spin.py", cwd=ws)
    read_until(proc.stdout, "spinning", count=4)
    return proc


def test_sigint_stops_every_rank_and_exits_130(gang: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = gang
    proc = spin(neo, rid, ws)
    assert len(workers(neo)) >= 6, "two launchers and four ranks are running"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert workers(neo) == []
    run: Any = neo.json("runs")
    assert run[0]["state"] == "stopped" and run[0]["exit_code"] == 130
    assert run[0]["error"] == STOPPED
    assert {r["phase"] for r in run[0]["ranks"]} == {"exited"}


def test_neo_stop_from_elsewhere_ends_like_an_interrupt(gang: tuple[Neo, str, Path]) -> None:
    """``neo stop`` (and the REST DELETE the Stop buttons call) while another process supervises:
    not a failure of the killed ranks, but ``stopped``/130 with the words of an interrupt."""
    neo, rid, ws = gang
    proc = spin(neo, rid, ws)
    running: Any = neo.json("runs")
    assert [r["phase"] for r in running[0]["ranks"]] == ["running"] * 4, "each rank printed"
    stop = neo.run("stop", running[0]["id"])
    assert stop.returncode == 0 and "stopped" in stop.stderr, stop.stderr
    assert proc.wait(timeout=60) == 130
    assert workers(neo) == []
    run: Any = neo.json("runs")
    assert (run[0]["state"], run[0]["exit_code"], run[0]["error"]) == ("stopped", 130, STOPPED)
    assert {r["state"] for r in run[0]["ranks"]} == {"stopped"}


def test_timeout_kills_a_hung_run(gang: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = gang
    (ws / "hang.py").write_text("import time\ntime.sleep(600)\n")
    proc = neo.run("run", "-r", rid, "--timeout", "3s", "hang.py", cwd=ws)
    assert proc.returncode == 124
    assert "timed out after 3s" in proc.stderr
    assert workers(neo) == []


def test_lost_pod_fails_the_run_fast_with_the_pod_named(gang: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = gang
    (ws / "hang.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    proc = neo.popen("run", "-r", rid, "--ranks", "all", "hang.py", cwd=ws)
    read_until(proc.stdout, "up", count=4)
    # The rank-1 pod's agent: every pod of the gang but the leader's (node0 on an empty cluster).
    agent = next(
        p for p in neo.processes() if " serve " in p and f"{rid}/node" in p and f"{rid}/node0/" not in p
    )
    os.kill(int(agent.split()[0]), signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 255
    assert f"pod {rid}-1 was lost" in err
    assert workers(neo) == []
    status: Any = neo.json("status", "--all")
    assert status[0]["state"] == "released" and "gone" in status[0]["reason"], "a partial gang is not kept"


def test_bad_run_input_fails_before_anything_starts(neo: Neo, tmp_path: Path) -> None:
    proc = neo.run("run", "--gpus", "4", "missing.py", cwd=tmp_path)
    assert proc.returncode == 1 and "script 'missing.py' not found" in proc.stderr
    assert neo.json("status") == [], "nothing was reserved"
    proc = neo.run("run", "-r", "r-nope", "x.py", cwd=EXAMPLES.parent)
    assert proc.returncode == 1


def test_nproc_per_node_larger_than_pod_gpus_is_refused(gang: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = gang
    proc = neo.run("run", "-r", rid, "--nproc-per-node", "3", "train_ddp.py", cwd=ws)
    assert proc.returncode == 1 and "--nproc-per-node 3 is more than the 2 GPUs" in proc.stderr


def test_plain_command_runs_once_per_node_and_check_reports_bandwidth(gang: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = gang
    proc = neo.run(
        "run", "-r", rid, "--ranks", "all", "--cmd", "sh -c 'echo node $NEO_NODE_RANK of $NEO_NNODES'", cwd=ws
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["[node 0 rank 0] node 0 of 2", "[node 1 rank 1] node 1 of 2"]

    check = neo.run("check", rid, "--sizes", "4096,262144", "--json", cwd=ws)
    assert check.returncode == 0, check.stderr
    report = json.loads(check.stdout)
    assert report["ranks"] == 4
    assert [s["bytes"] for s in report["sizes"]] == [4096, 262144]
    assert all(s["backend"] == "gloo" and s["busbw_gbps"] > 0 for s in report["sizes"])
    assert set(report["sizes"][0]["per_node_busbw_gbps"]) == {"0", "1"}


CHATTY = """\
import os
rank = os.environ["RANK"]
for i in range(4000):
    print("line", i, "of rank", rank, "ends here")  # five writes a line: PYTHONUNBUFFERED is set
"""


def test_lines_printed_in_pieces_reach_the_logs_and_the_screen_whole(gang: tuple[Neo, str, Path]) -> None:
    """torchrun passes on whatever part of a line its reader found, each part with a rank prefix;
    a rank's line must still arrive as one line, in its log and on screen (logs.py)."""
    neo, rid, ws = gang
    (ws / "chatty.py").write_text(CHATTY)
    proc = neo.run("run", "-r", rid, "--ranks", "all", "chatty.py", cwd=ws, check=True)
    shown = [line for line in proc.stdout.splitlines() if "line" in line]
    assert len(shown) == 4 * 4000
    for line in shown:
        prefix, _, body = line.partition("] ")
        rank = prefix.rsplit(" ", 1)[1]
        assert body.startswith("line ") and body.endswith(f" of rank {rank} ends here"), line
    runs: Any = neo.json("runs")
    for r in runs[0]["ranks"]:
        lines = Path(r["log"]).read_text().splitlines()
        assert lines == [f"line {i} of rank {r['rank']} ends here" for i in range(4000)]
