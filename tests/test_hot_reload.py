"""Hot reload with real torchrun and gloo: edits reach every rank in the same warm processes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

TRAIN = """\
import os
import torch, torch.distributed as dist
from jupyter_neo import keep
import helper
was_initialized = dist.is_initialized()
dist.init_process_group("gloo")
data = keep("data", lambda: torch.arange(10.0))
t = torch.ones(1) * helper.value()
dist.all_reduce(t)
print(f"pid={os.getpid()} rank={dist.get_rank()} value={t.item()} data={id(data)} pg_reused={was_initialized}",
      flush=True)
dist.destroy_process_group()
"""


def helper(value: str) -> str:
    return f"def value():\n    return {value}\n"


@pytest.fixture
def hot(neo: Neo, tmp_path: Path) -> Iterator[tuple[Neo, str, Path]]:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(TRAIN)
    (ws / "helper.py").write_text(helper("1.0"))
    res: Any = neo.json("reserve", "--gpus", "4", "--nodes", "2")
    yield neo, res["id"], ws
    neo.run("release", "--all", check=True)


def ranks(stdout: str) -> dict[int, dict[str, str]]:
    out = {}
    for line in stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        if "rank" in fields:
            out[int(fields["rank"])] = fields
    return out


def run(neo: Neo, rid: str, ws: Path, *extra: str) -> tuple[int, dict[int, dict[str, str]], str]:
    proc = neo.run("run", "-r", rid, "--hot", "--ranks", "all", *extra, "train.py", cwd=ws)
    return proc.returncode, ranks(proc.stdout), proc.stderr


def test_edit_reaches_every_rank_in_the_same_processes(hot: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = hot
    code, first, err = run(neo, rid, ws)
    assert code == 0, err
    assert "cold start" in err
    assert len(first) == 4 and {r["value"] for r in first.values()} == {"4.0"}

    (ws / "helper.py").write_text(helper("2.0"))
    code, second, err = run(neo, rid, ws)
    assert code == 0, err
    assert "hot: iteration 2" in err
    assert {r["value"] for r in second.values()} == {"8.0"}, "every rank runs the new code"
    for rank in range(4):
        assert second[rank]["pid"] == first[rank]["pid"], "same worker processes"
        assert second[rank]["data"] == first[rank]["data"], "keep()-cached tensor is the same object"
        assert second[rank]["pg_reused"] == "True", "the process group stayed alive"
    runs: Any = neo.json("runs")
    assert (
        runs[0]["iteration"] == 2 and runs[0]["timings"]["first_output"] < runs[1]["timings"]["first_output"]
    )


def test_syntax_error_keeps_old_code_and_next_edit_recovers(hot: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = hot
    code, first, err = run(neo, rid, ws)
    assert code == 0, err
    (ws / "helper.py").write_text("def value(:\n    return 3.0\n")
    code, broken, err = run(neo, rid, ws)
    assert code == 1
    assert "not applied: syntax error at helper.py:1" in err and "ranks still run generation 1" in err
    record: Any = neo.json("runs")
    assert record[0]["not_applied"].startswith("not applied: syntax error at helper.py:1")
    assert {r["exit_code"] for r in record[0]["ranks"]} == {None}, "no rank crashed"
    logs = neo.run("logs", record[0]["id"])
    assert "not applied: syntax error at helper.py:1" in logs.stderr, "neo logs says why it printed nothing"
    assert broken == {}, "no rank ran the broken generation"
    (ws / "helper.py").write_text(helper("3.0"))
    code, fixed, err = run(neo, rid, ws)
    assert code == 0, err
    assert {r["value"] for r in fixed.values()} == {"12.0"}
    assert {r["pid"] for r in fixed.values()} == {r["pid"] for r in first.values()}


def test_changed_launch_arguments_restart_cold(hot: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = hot
    code, first, err = run(neo, rid, ws)
    assert code == 0, err
    code, smaller, err = run(neo, rid, ws, "--nproc-per-node", "1")
    assert code == 0, err
    assert "cold start: the launch arguments changed" in err
    assert len(smaller) == 2
    assert not {r["pid"] for r in smaller.values()} & {r["pid"] for r in first.values()}
    assert len([p for p in neo.processes() if " serve " not in p]) == 2 + 2, "old workers are gone"


def test_an_idle_hot_rank_keeps_the_tree_it_last_ran_in(hot: tuple[Neo, str, Path]) -> None:
    """A hot rank moves into each new generation when it re-runs (torchrun stays where it started);
    syncs that come while it waits must leave that generation alone: what a cell or the script
    reads relative to its cwd is the tree it last ran (docs/sync.md)."""
    neo, rid, ws = hot
    (ws / "train.py").write_text(TRAIN.replace('print(f"pid=', 'print(f"cwd={os.getcwd()} pid='))
    code, _, err = run(neo, rid, ws)
    assert code == 0, err
    (ws / "helper.py").write_text(helper("2.0"))
    code, second, err = run(neo, rid, ws)
    assert code == 0, err
    assert "hot: iteration 2" in err
    for step in range(3, 8):  # syncs without a re-run: the ranks' generation leaves the window
        (ws / "helper.py").write_text(helper(f"{step}.0"))
        neo.run("sync", rid, "--path", str(ws), check=True)
    for rank, fields in second.items():
        cwd = os.path.realpath(f"/proc/{fields['pid']}/cwd")
        assert cwd == fields["cwd"], f"rank {rank}'s generation was moved under it"
        assert Path(cwd, "helper.py").read_text() == helper("2.0"), f"rank {rank}'s tree changed"
