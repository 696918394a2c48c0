"""Interactive ranks: notebook cells on every rank of a warm 2 x 2 gang (real torchrun, gloo).

One gang and one set of workers serve the whole module (starting torchrun and importing torch on
4 ranks is the expensive part); each test talks to the same live ranks, as a notebook would.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from jupyter_neo import magics as magics_module
from jupyter_neo.backends.local import kill_tree_under, procs_under
from jupyter_neo.runs.px import group, rank_label, select_ranks

pytest.importorskip("torch")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteractiveShell]:
    """A kernel-like shell with 4 warm rank workers (2 nodes x 2) on the local backend."""
    base = tmp_path_factory.mktemp("px")
    home, ws = base / "home", base / "ws"
    ws.mkdir()
    saved = {k: os.environ.get(k) for k in ("NEO_HOME", "XDG_CONFIG_HOME", "NEO_CONFIG")}
    os.environ.update(NEO_HOME=str(home), XDG_CONFIG_HOME=str(base / "xdg"))
    os.environ.pop("NEO_CONFIG", None)
    cwd = os.getcwd()
    os.chdir(ws)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_neo")
    try:
        ip.run_line_magic("neo", "reserve --gpus 4 --nodes 2 --name px")
        with capture_output() as out:
            ip.run_line_magic("neo", "px --start -r px")
        assert "4 rank workers up" in out.stdout
        yield ip
    finally:
        try:
            magics_module._MAGICS[id(ip)].client.release_all()
        finally:
            ip.run_line_magic("unload_ext", "jupyter_neo")
            InteractiveShell.clear_instance()
            os.chdir(cwd)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            leftovers = procs_under(home)
            kill_tree_under(home)
            assert not leftovers, f"processes left behind: {leftovers}"


def cell(ip: InteractiveShell, code: str, line: str = "-r px") -> str:
    """Run a ``%%neo px`` cell and return what the notebook displayed (text)."""
    with capture_output() as out:
        ip.run_cell_magic("neo", f"px {line}", code)
    shown = [o.data.get("text/plain", "") for o in out.outputs]
    return out.stdout + "\n".join(shown)


def worker_pids(ip: InteractiveShell) -> set[int]:
    home = Path(os.environ["NEO_HOME"])
    return {p.pid for p in procs_under(home) if "--hot" in " ".join(p.cmdline()) and "rank" in p.cmdline()}


def test_state_persists_and_all_reduce_shows_one_line_for_all_ranks(shell: InteractiveShell) -> None:
    assert cell(shell, "x = torch.ones(1) * (rank + 1)").strip() == ""
    shown = cell(shell, "dist.all_reduce(x)\nx.item()")
    assert "ranks 0\u20133: 10.0" in shown
    assert shown.count("10.0") == 1  # deduplicated across the 4 ranks
    assert cell(shell, "x.item() + rank").count("rank") == 4  # distinct values: one line each


def test_predefined_names_and_rank_selection(shell: InteractiveShell) -> None:
    shown = cell(shell, "(rank, local_rank, world_size, str(device))", "-r px --ranks node:1")
    assert "rank 2: (2, 0, 4, 'cpu')" in shown and "rank 3: (3, 1, 4, 'cpu')" in shown
    assert "rank 0" not in shown
    shown = cell(shell, "print('hello from', rank)", "-r px --ranks 0,3")
    assert "hello from 0" in shown and "hello from 3" in shown and "hello from 1" not in shown


def test_an_exception_on_one_rank_shows_its_traceback_and_the_worker_lives(shell: InteractiveShell) -> None:
    pids = worker_pids(shell)
    shown = cell(shell, "if rank == 3:\n    raise ValueError('bad shard on rank 3')\n'ok'")
    assert "rank 3 raised:" in shown and "ValueError: bad shard on rank 3" in shown
    assert shown.count("Traceback") == 1
    assert "ranks 0\u20132: 'ok'" in shown
    assert cell(shell, "rank * 2", "-r px --ranks 3").strip().endswith("6")
    assert worker_pids(shell) == pids


def test_ranks_stuck_in_a_collective_are_named(shell: InteractiveShell) -> None:
    """Rank 3 fails before an all_reduce the others enter: the cell says who waits where."""
    code = "if rank == 3:\n    raise RuntimeError('rank 3 gave up')\nt = torch.ones(1)\ndist.all_reduce(t)\n"
    ip = shell
    main = threading.get_ident()
    interrupter = threading.Timer(4.0, lambda: _interrupt_main(main))
    interrupter.start()
    with capture_output() as out, pytest.raises((KeyboardInterrupt, UsageError)):
        ip.run_cell_magic("neo", "px -r px", code)
    interrupter.cancel()
    shown = "\n".join(o.data.get("text/plain", "") for o in out.outputs)
    assert "rank 3 raised:" in shown and "RuntimeError: rank 3 gave up" in shown
    assert "ranks 0\u20132 are still in the cell after rank 3 failed" in shown
    assert "all_reduce" in shown
    # The waiting ranks stay inside gloo's all_reduce; restart the workers cold.
    with capture_output() as out:
        ip.run_line_magic("neo", "px --restart -r px")
    assert "4 rank workers up" in out.stdout
    assert "ranks 0\u20133: 4.0" in cell(ip, "t = torch.ones(1)\ndist.all_reduce(t)\nt.item()")


def _interrupt_main(ident: int) -> None:
    import signal

    signal.pthread_kill(ident, signal.SIGINT)


def test_interrupt_stops_a_sleeping_cell_on_every_rank_within_2s(shell: InteractiveShell) -> None:
    pids = worker_pids(shell)
    main = threading.get_ident()
    t0 = time.monotonic()
    interrupter = threading.Timer(1.0, lambda: _interrupt_main(main))
    interrupter.start()
    with pytest.raises((KeyboardInterrupt, UsageError)) as info:
        cell(shell, "import time\ntime.sleep(60)")
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0 + 2.0, f"interrupt took {elapsed:.1f}s"
    if isinstance(info.value, UsageError):
        assert "interrupted on every rank" in str(info.value)
    assert worker_pids(shell) == pids
    assert "ranks 0\u20133: 'alive'" in cell(shell, "'alive'")


def test_pull_and_push(shell: InteractiveShell) -> None:
    cell(shell, "w = torch.arange(4.0) + rank")
    assert shell.run_line_magic("neo", "pull w --rank 2 -r px").tolist() == [2.0, 3.0, 4.0, 5.0]
    with capture_output():
        shell.run_line_magic("neo", "pull w --rank 1 --as w1 -r px")
    assert shell.user_ns["w1"].tolist() == [1.0, 2.0, 3.0, 4.0]
    shell.user_ns["lr"] = 0.25
    with capture_output():
        shell.run_line_magic("neo", "push lr -r px")
    assert "ranks 0\u20133: 0.5" in cell(shell, "lr * 2")
    with pytest.raises(UsageError, match="over the 10-byte limit"):
        shell.run_line_magic("neo", "pull w --max-bytes 10 -r px")
    with pytest.raises(UsageError, match="'nope' is not defined on rank 0"):
        shell.run_line_magic("neo", "pull nope -r px")


def test_hot_edit_of_an_imported_module_is_seen_by_cells(shell: InteractiveShell) -> None:
    ws = Path.cwd()
    (ws / "helper.py").write_text("def value():\n    return 1\n")
    (ws / "train.py").write_text("import helper\nmodel = {'value': helper.value()}\n")
    magics = magics_module._MAGICS[id(shell)]
    run = magics.client.run("train.py", reservation="px", hot=True, workspace=ws, nproc_per_node=2)
    assert run.exit_code in (0, None), run.error
    assert "ranks 0\u20133: 1" in cell(shell, "model['value']")
    (ws / "helper.py").write_text("def value():\n    return 2\n")
    magics.client.run("train.py", reservation="px", hot=True, workspace=ws, nproc_per_node=2)
    assert "ranks 0\u20133: 2" in cell(shell, "model['value']")
    assert "ranks 0\u20133: 2" in cell(shell, "import helper\nhelper.value()")


def test_auto_mode_sends_plain_cells_to_the_ranks(shell: InteractiveShell) -> None:
    with capture_output():
        shell.run_line_magic("neo", "px --auto on -r px")
    try:
        with capture_output() as out:
            shell.run_cell("rank + 100")
        shown = out.stdout + "".join(o.data.get("text/plain", "") for o in out.outputs)
        assert "rank 0: 100" in shown and "rank 3: 103" in shown
    finally:
        with capture_output():
            shell.run_line_magic("neo", "px --auto off")
    with capture_output() as out:
        shell.run_cell("1 + 1")
    assert "rank" not in out.stdout


def test_completion_uses_rank_0_namespace(shell: InteractiveShell) -> None:
    cell(shell, "my_model_weights = [1, 2]")
    ranks = magics_module._MAGICS[id(shell)].px.ranks("px")
    assert "my_model_weights" in ranks.complete("my_model")
    assert "my_model_weights.append(" in ranks.complete("my_model_weights.app")
    # What the kernel answers to Tab inside a %%neo px cell (IPython's completer, as Jupyter asks it).
    text = "%%neo px -r px\nmy_model_weights.app"
    _, matches = shell.complete("my_model_weights.app", text, len(text))
    assert "my_model_weights.append" in matches


def test_bad_input_is_one_line(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match=r"rank 9 is not in 0\.\.3"):
        cell(shell, "1", "-r px --ranks 9")
    with pytest.raises(UsageError, match="nothing to run"):
        shell.run_line_magic("neo", "px -r px")
    with pytest.raises(UsageError, match="no reservation 'nope'"):
        cell(shell, "1", "-r nope")


def test_selection_and_grouping_helpers() -> None:
    assert select_ranks("node:1", 2, 2) == [2, 3]
    assert select_ranks("all", 2, 2) == [0, 1, 2, 3]
    assert rank_label([0, 1, 2, 3]) == "ranks 0\u20133" and rank_label([0, 2]) == "ranks 0,2"
    assert group({0: "a", 1: "b", 2: "a"}) == [([0, 2], "a"), ([1], "b")]


def test_cells_follow_a_cold_restart_with_a_new_world_shape(shell: InteractiveShell) -> None:
    """Runs last: a --hot run with fewer ranks per node restarts the workers; cells find the new ones."""
    ws = Path.cwd()
    (ws / "small.py").write_text("shape = 'small'\n")
    magics = magics_module._MAGICS[id(shell)]
    run = magics.client.run("small.py", reservation="px", hot=True, workspace=ws, nproc_per_node=1)
    assert run.note and run.note.startswith("cold start: the launch arguments changed"), run.note
    assert "ranks 0\u20131: ('small', 2)" in cell(shell, "(shape, world_size)")
