"""Bad input gets one clear line naming the fix, a non-zero exit, and leaves nothing held."""

from __future__ import annotations

import os
import stat

import pytest

from tests.conftest import Neo, use_config

CASES = [
    (["reserve", "--gpus", "0"], "greater than or equal to 1"),
    (["reserve", "--gpus", "-8"], "greater than or equal to 1"),
    (["reserve", "--gpus", "1.5"], "not a whole number of GPUs"),
    (["reserve", "--gpus", "64"], "'local' has 4"),
    (["reserve", "--gpus", "12"], "use a multiple of 8"),
    (["reserve", "--gpus", "12", "--nodes", "5"], "does not divide"),
    (["reserve", "--gpus", "8", "--gpu-type", "B300"], "unknown GPU type 'B300'"),
    (["reserve", "--gpus", "8", "--cluster", "nope"], "unknown cluster 'nope'"),
    (["reserve", "--gpus", "8", "--idle-ttl", "soon"], "cannot read duration"),
    (["release", "r-doesnotexist"], "no reservation 'r-doesnotexist'"),
    (["release"], "neo release ID, or neo release --all"),
    (["status", "nope"], "no reservation 'nope'"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_refused_cleanly(neo: Neo, args: list[str], message: str) -> None:
    proc = neo.run(*args)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert neo.processes() == []
    assert neo.json("clusters")[0]["free_gpus"] == 32  # type: ignore[index]


def test_malformed_config_shows_the_line(neo: Neo) -> None:
    use_config(neo, "clusters:\n  - name: a\n    nodes: 2\n    gpus_per_node: zero\n")
    proc = neo.run("clusters")
    assert proc.returncode == 1
    assert f"{neo.config}:4: clusters.0.gpus_per_node" in proc.stderr


def test_config_that_is_not_yaml_shows_the_line(neo: Neo) -> None:
    use_config(neo, "clusters:\n  - name: a\n   nodes: [\n")
    proc = neo.run("clusters")
    assert proc.returncode == 1 and f"{neo.config}:3" in proc.stderr and "not valid YAML" in proc.stderr


def test_unknown_config_key_is_named(neo: Neo) -> None:
    use_config(neo, "clusters:\n  - name: a\n    nodes: 2\n    gpus_per_node: 8\n    prise: 3\n")
    proc = neo.run("clusters")
    assert proc.returncode == 1 and ":5: clusters.0.prise: Extra inputs are not permitted" in proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_state_dir_names_neo_home(neo: Neo) -> None:
    neo.home.mkdir()
    neo.home.chmod(stat.S_IRUSR | stat.S_IXUSR)
    proc = neo.run("clusters")
    assert proc.returncode == 1 and "NEO_HOME" in proc.stderr


def test_state_dir_that_is_a_file_names_neo_home(neo: Neo) -> None:
    neo.home.parent.mkdir(exist_ok=True)
    neo.home.write_text("not a directory")
    proc = neo.run("clusters")
    assert proc.returncode == 1 and "cannot use state directory" in proc.stderr and "NEO_HOME" in proc.stderr
    neo.home.unlink()
