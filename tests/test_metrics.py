"""Live training metrics: ``jupyter_neo.log`` on the ranks -> the run record -> the widget's chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_neo.metrics_chart import series
from tests.conftest import Neo

pytest.importorskip("torch")

TRAIN = """\
import torch.distributed as dist
from jupyter_neo import log
dist.init_process_group("gloo")
rank = dist.get_rank()
for step in range(50):
    log(step=step, loss=1.0 / (step + 1))
    log(step=step, all_ranks=True, grad_norm=float(rank + step))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_metrics_of_a_50_step_run_land_in_the_record_and_the_widget(neo: Neo, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(TRAIN)
    res: Any = neo.json("reserve", "--gpus", "4", "--nodes", "2")
    try:
        proc = neo.run("run", "-r", res["id"], "train.py", cwd=ws)
        assert proc.returncode == 0, proc.stderr
        assert "NEO_METRIC" not in proc.stdout + proc.stderr  # protocol, not output
        runs: Any = neo.json("runs")
        metrics = runs[0]["metrics"]
        losses = [m for m in metrics if "loss" in m]
        assert len(losses) == 50 and {m["rank"] for m in losses} == {0}
        assert losses[-1]["step"] == 49 and losses[-1]["loss"] == pytest.approx(1 / 50)
        norms = [m for m in metrics if "grad_norm" in m]
        assert len(norms) == 200 and {m["rank"] for m in norms} == {0, 1, 2, 3}

        curves = series(metrics)
        assert curves["loss"].steps == [float(s) for s in range(50)] and not curves["loss"].banded
        g = curves["grad_norm"]
        assert (g.low[10], g.high[10], g.mean[10]) == (10.0, 13.0, 11.5)

        from jupyter_neo.widgets import RunWidget

        widget = RunWidget()
        with neo.client() as client:
            widget.finish(client.get_run(runs[0]["id"]))
        assert widget.chart is not None and sorted(widget.chart.names) == ["grad_norm", "loss"]
        line, band = widget.chart._marks["grad_norm"]
        assert list(line.y)[10] == 11.5 and [list(b)[10] for b in band.y] == [10.0, 13.0]
        assert json.loads(json.dumps(metrics)) == metrics  # stored as plain JSON
    finally:
        neo.run("release", "--all", check=True)


def test_log_outside_a_rank_does_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from jupyter_neo import log

    log(step=1, loss=0.5)
    assert capsys.readouterr().out == ""
