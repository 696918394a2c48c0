"""``%neo reserve --data`` in a real IPython shell: the magics take the CLI's data flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from tests.conftest import Neo, use_config
from tests.test_datasets import estate_text
from tests.test_magics import neo_magics, shell

__all__ = ["shell"]  # the fixture, imported for pytest


@pytest.fixture
def data_estate(neo: Neo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Neo:
    use_config(neo, estate_text(tmp_path))
    monkeypatch.setenv("NEO_CONFIG", str(neo.config))
    return neo


def test_magic_reserve_with_data_goes_where_the_data_is(data_estate: Neo, shell: InteractiveShell) -> None:
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("neo", "reserve --gpus 4 --data clinical --cluster us")
    assert "dataset clinical may not leave residency ['eu']; us is ['us']" in str(info.value)
    shell.run_line_magic("neo", "reserve --gpus 4 --nodes 2 --data clinical --name exp")
    res = neo_magics(shell).client.status("exp")[0]
    assert res.cluster == "fi" and [u.name for u in res.datasets] == ["clinical"]
    assert res.datasets[0].path is not None and (Path(res.datasets[0].path) / "shard-0.txt").is_file()
