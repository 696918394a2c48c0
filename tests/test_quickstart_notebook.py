"""``examples/quickstart.ipynb`` executed headless on a real kernel (nbclient) against the local backend."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import Neo

pytest.importorskip("torch")
pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_quickstart_runs_and_shows_rank0_output(neo: Neo, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    for name in ("quickstart.ipynb", "train_ddp.py"):
        shutil.copy(EXAMPLES / name, ws / name)
    nb = nbformat.read(ws / "quickstart.ipynb", as_version=4)
    # The kernel inherits this process's environment: the neo fixture's NEO_HOME and config home.
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(ws)}}
    ).execute()

    text = "\n".join(
        out.get("text", "") if out["output_type"] == "stream" else out.get("data", {}).get("text/plain", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert "succeeded {0: 0, 1: 0, 2: 0, 3: 0}" in text
    assert "first step done" in text and "rank 0/4 lr=" in text and "ranks agree: True" in text
    assert "<neo run run-" in text
    assert "cold start: first hot run" in text and "hot: iteration 2 of" in text
    hot_lines = [line for line in text.splitlines() if line.startswith("pid ") and " rank 0: " in line]
    assert len(hot_lines) == 2 and "scale=1.0" in hot_lines[0] and "scale=2.0" in hot_lines[1]
    assert hot_lines[0].split()[1] == hot_lines[1].split()[1], "the edit ran in the same rank-0 process"
    assert "ranks 0\u20133: 10.0" in text, "a px cell all-reduced on the 4 warm ranks"
    assert "ranks 0\u20133: (2.0, torch.Size([1000]))" in text, "px cells see the hot script's globals"
    assert "torch.Size([1000])" in text.split("ranks 0\u20133: (2.0")[1], "pulled rank 1's weights"
    assert not any(out["output_type"] == "error" for cell in nb.cells for out in cell.get("outputs", []))
    assert neo.json("status") == [], "the notebook released its reservation"
