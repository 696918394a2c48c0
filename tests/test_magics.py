"""``%neo`` / ``%%neo`` through a real IPython ``InteractiveShell`` against the local backend."""

from __future__ import annotations

import os
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


def test_widget_state_and_a_stop_from_elsewhere_ends_like_an_interrupt(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The widget's Stop goes to the server (DELETE runs/ID -> Core.stop_run), not to the blocked
    kernel: stopping from another controller while the cell blocks records ``stopped``/130 with the
    words of a kernel interrupt. (The click itself is driven in Chromium by the browser test.)"""
    from jupyter_neo.client import Client
    from jupyter_neo.runs.supervisor import STOPPED

    views: list[Any] = []
    real = magics_module.make_view

    def spy(*a: Any, **kw: Any) -> Any:
        views.append(real(*a, **kw))
        return views[-1]

    monkeypatch.setattr(magics_module, "make_view", spy)
    neo_magics(shell).widgets = True
    stopped: list[float] = []

    def stop_when_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if views and "started" in "".join(views[0].tail(1)) and "id" in views[0].widget.run:
                run_id = views[0].widget.run["id"]
                other = Client()  # another controller, as the Jupyter server is
                try:
                    stopped.append(time.monotonic())
                    other.stop_run(run_id)
                finally:
                    other.close()
                return
            time.sleep(0.05)

    stopper = threading.Thread(target=stop_when_running)
    stopper.start()
    with capture_output():
        result = shell.run_line_magic(
            "neo", "run --gpus 2 --nodes 2 --ranks 1 --cmd \"sh -c 'echo started; sleep 60'\""
        )
    stopper.join()
    widget = views[0]
    assert stopped and time.monotonic() - stopped[0] < 15, "the stop ended the run long before its sleep"
    assert (result.state, result.exit_code, result.error) == ("stopped", 130, STOPPED)
    assert widget.widget.run["state"] == "stopped" and widget.widget.finished
    assert widget.widget.shown == [1]
    assert [r["state"] for r in widget.widget.run["ranks"]] == ["stopped", "stopped"]
    assert any("started" in line for line in widget.widget.tail), "the shown ranks' merged tail"
    assert widget.widget.notice.startswith("reserved a new gang"), "no silent spending"
    assert "%neo release" in widget.widget.notice
    assert result.id in widget.text()
    result.release()  # the gang this run reserved, given back from the result
    assert neo_magics(shell).client.status() == []


def test_logs_and_release_default_to_the_last_run_and_the_only_reservation(
    shell: InteractiveShell,
) -> None:
    neo_magics(shell).widgets = False
    with capture_output() as cap:
        result = shell.run_line_magic("neo", "run --gpus 2 --nodes 2 --cmd 'echo hello-from-logs'")
    assert result.ok
    assert "reserved a new gang" in cap.stderr and "%neo release" in cap.stderr
    with capture_output() as cap:
        shell.run_line_magic("neo", "logs")
    assert "hello-from-logs" in cap.stdout
    with capture_output():
        shell.run_line_magic("neo", "release")
    assert neo_magics(shell).client.status() == []
    with pytest.raises(UsageError, match=r"none is active"):
        shell.run_line_magic("neo", "release")


def test_errors_name_notebook_commands() -> None:
    from jupyter_neo.errors import InvalidRequest

    text = magics_module.one_line(
        InvalidRequest("reservation r-1 is released", "reserve a new gang (neo reserve) or neo status")
    )
    assert "(%neo reserve) or %neo status" in text and "jupyter-neo" not in text
    assert (
        magics_module.notebook_words("see jupyter-neo docs; run neo logs")
        == "see jupyter-neo docs; run %neo logs"
    )
    assert magics_module.cell_label("# hi\nimport torch\n", 3) == "cell [3]: import torch"


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


def test_sync_bar_stays_hidden_and_empty_while_nothing_is_planned() -> None:
    """A sync that plans 0 bytes showed a full bar labelled "0.0 / 0.0 MiB"."""
    from jupyter_neo.widgets import SyncProgress

    with capture_output():
        bar = SyncProgress(widgets=True)
    bar.update(0, 0)
    assert bar.bar.value == 0 and bar.box.layout.display == "none" and bar.label.value == ""
    bar.update(2**20, 4 * 2**20)
    assert bar.bar.value == 25 and bar.box.layout.display == "" and bar.label.value == "1.0 MiB / 4.0 MiB"
    bar.update(62, 62)  # a one-line edit: its size, not "0.0 / 0.0 MiB"
    assert bar.label.value == "62 B / 62 B"


@pytest.fixture
def controller_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEO_CONTROLLER", "off")


def test_with_the_controller_off_everything_runs_in_the_kernel(
    controller_off: None, shell: InteractiveShell, neo: Neo
) -> None:
    """``NEO_CONTROLLER=off``: the same verbs (controller/api.py) on the kernel's own core."""
    from jupyter_neo.controller import client as controller

    neo_magics(shell).widgets = False
    with capture_output() as cap:
        result = shell.run_line_magic("neo", "run --gpus 2 --nodes 2 --ranks all --cmd 'echo in-kernel'")
    assert result.ok and "[node 1 rank 1] in-kernel" in cap.stdout, cap.stdout
    assert "reserved a new gang" in cap.stderr
    assert result.record.controller is not None
    assert result.record.controller["pid"] == os.getpid(), "supervised by the kernel itself"
    assert result.refresh().state == "succeeded" and result.logs(1) == ["in-kernel"]
    with capture_output() as cap:
        shell.run_line_magic("neo", "status")
    assert result.reservation in cap.stdout
    assert controller.controller_pid(str(neo.home)) is None, "no controller was started"
