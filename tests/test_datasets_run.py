"""Ranks of a real torchrun gang (gloo on CPU) read a dataset at ``NEO_DATA_<NAME>``.

Each rank reads its own shard from the dataset folder the reservation linked in, and the gang
all-reduces what it read: every rank must see the same total, so every rank saw the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo, use_config
from tests.test_datasets import estate_text

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

READER = """
import os
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
root = os.environ["NEO_DATA_CORPUS"]
with open(os.path.join(root, f"shard-{rank}.txt")) as f:
    value = int(f.read())
total = torch.tensor([value])
dist.all_reduce(total)
print(f"rank {rank}/{world} read {value} from {root}; total {int(total)}", flush=True)
dist.destroy_process_group()
"""


def test_every_rank_reads_the_mounted_dataset(neo: Neo, tmp_path: Path) -> None:
    use_config(neo, estate_text(tmp_path, corpus_size="1TB"))  # too big to copy: the gang goes to fi
    corpus = tmp_path / "data" / "corpus"
    for rank in range(4):
        (corpus / f"shard-{rank}.txt").write_text(str(10**rank))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "read_data.py").write_text(READER)
    proc = neo.run(
        "run", "--gpus", "4", "--nodes", "2", "--data", "corpus", "--ranks", "all", "read_data.py", cwd=ws
    )
    assert proc.returncode == 0, proc.stderr
    res: Any = neo.json("status")
    path = res[0]["datasets"][0]["path"]
    assert res[0]["cluster"] == "fi", "the gang went where the data is"
    lines = sorted(line for line in proc.stdout.splitlines() if " read " in line)
    assert len(lines) == 4
    for rank, line in enumerate(lines):
        assert f"rank {rank}/4 read {10**rank} from {path}; total 1111" in line
    assert Path(path).resolve() == corpus.resolve()
    neo.run("release", "--all", check=True)
