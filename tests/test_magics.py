"""``%neo`` / ``%%neo`` through a real IPython ``InteractiveShell`` against the local backend."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from jupyter_neo import magics as magics_module
from jupyter_neo.cli.parser import build_parser
from jupyter_neo.cli.runs import run_call
from tests.conftest import Neo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def shell(neo: Neo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A fresh shell with the extension loaded, working in a workspace holding the DDP example."""
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(EXAMPLES / "train_ddp.py", ws / "train_ddp.py")
    monkeypatch.chdir(ws)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_neo")
    yield ip
    try:
        magics_module._MAGICS[id(ip)].client.release_all()
    finally:
        ip.run_line_magic("unload_ext", "jupyter_neo")
        InteractiveShell.clear_instance()


def neo_magics(ip: InteractiveShell) -> magics_module.NeoMagics:
    return magics_module._MAGICS[id(ip)]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "the following arguments are required: command"),
        ("bogus", "invalid choice: 'bogus'"),
        ("reserve --gpus many", "'many' is not a whole number of GPUs"),
        ("release", "say which reservation to release"),
        ("status no-such-id", "no reservation 'no-such-id'"),
        ("run --gpus 4 'unbalanced", "cannot split the line"),
        ("run", "say what to run"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(shell: InteractiveShell, line: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("neo", line)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    with capture_output() as cap:
        shell.run_cell(f"%neo {line}")
    shown = cap.stdout + cap.stderr
    assert "Traceback" not in shown and "UsageError" in shown


def test_flags_then_script_then_its_args_parse_like_the_cli() -> None:
    args = build_parser("%neo").parse_args(
        ["run", "--gpus", "4", "--nodes", "2", "train.py", "--lr", "0.1", "--gpus", "9"]
    )
    target, script_args, kw = run_call(args)
    assert (target, script_args) == ("train.py", ["--lr", "0.1", "--gpus", "9"])
    assert kw["gpus"] == 4 and kw["nodes"] == 2 and kw["kind"] == "script"


def test_reserve_status_extend_release(shell: InteractiveShell) -> None:
    with capture_output() as cap:
        shell.run_line_magic("neo", "reserve --gpus 4 --nodes 2 --name nb --json")
    assert '"state": "ready"' in cap.stdout
    with capture_output() as cap:
        shell.run_line_magic("neo", "status")
    assert "nb" in cap.stdout and "2x2" in cap.stdout
    shell.run_line_magic("neo", "extend nb --idle-ttl 2h")
    res = neo_magics(shell).client.status("nb")[0]
    assert res.idle_ttl == 7200
    with capture_output():
        shell.run_line_magic("neo", "release nb")
    assert neo_magics(shell).client.status() == []


def test_line_run_streams_rank0_and_returns_a_run(shell: InteractiveShell) -> None:
    with capture_output() as cap:
        result = shell.run_line_magic("neo", "run --gpus 4 --nodes 2 train_ddp.py --steps 2 --lr 0.2")
    assert result.ok and result.exit_code == 0, result.error
    assert result.exit_codes == {0: 0, 1: 0, 2: 0, 3: 0}
    assert "[node 0 rank 0] rank 0/4 lr=0.2" in cap.stdout
    assert "rank 3/4" not in cap.stdout, "only rank 0 by default, as the CLI"
    assert any("rank 3/4" in line for line in result.logs(3))
    assert result.id in repr(result)

    # %%neo run: the cell is the script, on every rank of the warm gang the line run reserved.
    cell = "import os\nprint('cell says hello from rank', os.environ['RANK'])\n"
    with capture_output() as cap:
        cell_result = shell.run_cell_magic("neo", f"run -r {result.reservation} --ranks all", cell)
    assert cell_result.ok, cell_result.error
    assert sorted(line.split()[-1] for line in cap.stdout.splitlines() if "cell says" in line) == [
        "0",
        "1",
        "2",
        "3",
    ]
    assert list(Path(".neo").glob("cell_*.py")), "the cell was written into the workspace"
    with pytest.raises(UsageError, match="only runs cells"):
        shell.run_cell_magic("neo", "status", cell)


def test_widget_shows_the_gang_and_stop_stops_it(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    views: list[Any] = []
    real = magics_module.make_view

    def spy(*a: Any, **kw: Any) -> Any:
        views.append(real(*a, **kw))
        return views[-1]

    monkeypatch.setattr(magics_module, "make_view", spy)
    neo_magics(shell).widgets = True

    def click_when_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if views and "started" in "".join(views[0].tail(1)):
                views[0].stop_button.click()
                return
            time.sleep(0.05)

    clicker = threading.Thread(target=click_when_running)
    clicker.start()
    t0 = time.monotonic()
    with capture_output():
        result = shell.run_line_magic(
            "neo", "run --gpus 2 --nodes 2 --ranks 1 --cmd \"sh -c 'echo started; sleep 60'\""
        )
    clicker.join()
    widget = views[0]
    assert time.monotonic() - t0 < 30, "Stop ended the run long before its sleep"
    assert result.state == "stopped"
    assert widget.stop_requested and widget.stop_button.disabled
    assert "node 1" in widget.grid.value and "rank 1" in widget.grid.value
    assert "started" in widget.log.value, "the selected rank's tail is shown"
    assert result.id in widget.text()


def test_first_large_sync_shows_progress_and_a_noop_shows_none(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    for i in range(12):  # 48 MiB of shards: content moves in 4 MiB frames while someone watches
        (Path.cwd() / f"shard{i}.bin").write_bytes(bytes([i]) * (4 * 2**20))
    neo_magics(shell).widgets = False
    with capture_output():
        shell.run_line_magic("neo", "reserve --gpus 2 --nodes 2 --name bar")
    with capture_output() as first:
        shell.run_line_magic("neo", "sync bar")
    steps = [line for line in first.stdout.splitlines() if line.startswith("sync: ")]
    assert len(steps) >= 5, first.stdout
    assert steps[-1].startswith("sync: 100%")
    percents = [int(s.split()[1].rstrip("%")) for s in steps]
    assert percents == sorted(percents), "progress only moves forward"
    with capture_output() as again:
        shell.run_line_magic("neo", "sync bar")
    assert not [line for line in again.stdout.splitlines() if line.startswith("sync: ")]
    assert "in sync" in again.stdout
