"""Datasets and data locality on a local multi-cluster estate with real dataset folders.

Placement follows the data, a residency-bound dataset never goes to a cheaper foreign cluster, a
copy is weighed against cheaper GPUs, the gang's pods find the data at ``NEO_DATA_<NAME>``, and bad
input is one line with nothing held.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from jupyter_neo import placement
from jupyter_neo.config import parse_config_text
from jupyter_neo.errors import ConfigError, InvalidRequest
from jupyter_neo.model import GangRequest
from tests.conftest import Neo, use_config

# Three H100 clusters: us is cheapest, fi holds the data, de holds nothing. 1 Gbit/s between
# providers at $0.05/GB unless a rule says otherwise; horizon 8h.
ESTATE = """
clusters:
  - {{name: us, provider: lambda, region: us-east-1, residency: [us], gpu_type: H100,
     nodes: 2, gpus_per_node: 2, price_per_gpu_hour: 2.00}}
  - {{name: fi, provider: nebius, region: eu-north1, residency: [eu, fi], gpu_type: H100,
     nodes: 2, gpus_per_node: 2, price_per_gpu_hour: 3.00}}
  - {{name: de, provider: coreweave, region: eu-central, residency: [eu, de], gpu_type: H100,
     nodes: 2, gpus_per_node: 2, price_per_gpu_hour: 2.50}}
datasets:
  - name: clinical
    size: 200GB
    residency: [eu]
    locations: [{{cluster: fi, path: {clinical}}}]
  - name: corpus
    size: {corpus_size}
    locations: [{{cluster: fi, path: {corpus}}}]
transfer:
  horizon: 8h
  rules:
    - {{from_provider: nebius, egress_per_gb: 0.10, bandwidth: 1Gbit}}
"""


def estate_text(tmp_path: Path, corpus_size: str = "100GB") -> str:
    for name in ("clinical", "corpus"):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "shard-0.txt").write_text(f"{name} shard 0\n")
    return ESTATE.format(
        clinical=tmp_path / "data" / "clinical", corpus=tmp_path / "data" / "corpus", corpus_size=corpus_size
    )


def ranked(text: str, **request: Any) -> list[placement.Candidate]:
    cfg = parse_config_text(text)
    return placement.evaluate(
        GangRequest(**request),
        cfg.clusters,
        datasets={d.name: d for d in cfg.datasets},
        transfer=cfg.transfer,
    )


# ---------------------------------------------------------------------------- placement


def test_without_data_the_ranking_is_cheapest_first(tmp_path: Path) -> None:
    cands = ranked(estate_text(tmp_path), gpus=4)
    assert [c.cluster.name for c in cands] == ["us", "de", "fi"]
    assert [c.estimate for c in cands] == [8 * 4 * 2.00, 8 * 4 * 2.50, 8 * 4 * 3.00]


def test_residency_bound_dataset_refuses_the_cheaper_foreign_cluster_with_the_reason(tmp_path: Path) -> None:
    cands = ranked(estate_text(tmp_path), gpus=4, data=["clinical"])
    by = {c.cluster.name: c for c in cands}
    assert by["us"].rejected == "dataset clinical may not leave residency ['eu']; us is ['us']"
    # de is in the EU: a copy is legal there; fi holds it. The copy (200 GB at $0.10 and 1600 s of a
    # $10/h gang, $24.44) costs more than de's cheaper GPUs save over 8h ($16), so fi wins.
    assert by["de"].rejected is None and by["de"].data.fits[0].copy is not None
    assert by["de"].data.copy_cost == 20.0 and by["de"].data.copy_seconds == 1600.0
    assert by["de"].estimate == pytest.approx(20.0 + 10.0 * (1600 / 3600 + 8))
    assert cands[0].cluster.name == "fi" and cands[0].data.fits[0].location is not None


def test_a_cheap_copy_moves_the_gang_to_cheaper_gpus(tmp_path: Path) -> None:
    # 10 GB: $1 and 80 s to copy, against $32 saved on us over 8h: us wins although fi holds it.
    cands = ranked(estate_text(tmp_path, corpus_size="10GB"), gpus=4, data=["corpus"])
    assert [c.cluster.name for c in cands] == ["us", "de", "fi"]
    copy = cands[0].data.fits[0].copy
    assert copy is not None and copy.source == "cluster fi" and copy.cost == 1.0 and copy.seconds == 80.0


def test_an_expensive_copy_keeps_the_gang_with_the_data(tmp_path: Path) -> None:
    # 1 TB: $100 and 2h13m to copy: more than the cheaper GPUs save, so fi (the data) wins.
    cands = ranked(estate_text(tmp_path, corpus_size="1TB"), gpus=4, data=["corpus"])
    assert cands[0].cluster.name == "fi"
    assert cands[0].estimate == pytest.approx(8 * 12.0)
    assert cands[1].estimate > cands[0].estimate


def test_the_copy_does_not_reorder_when_the_data_is_on_the_cheapest_cluster(tmp_path: Path) -> None:
    text = estate_text(tmp_path).replace(
        "locations: [{cluster: fi, path:", "locations: [{cluster: us, path:", 2
    )
    text = text.replace(
        "residency: [eu]\n    locations: [{cluster: us", "residency: [eu]\n    locations: [{cluster: fi"
    )
    cands = ranked(text, gpus=4, data=["corpus"])
    assert [c.cluster.name for c in cands] == ["us", "de", "fi"]
    assert cands[0].data.fits[0].location is not None


def test_the_bucket_is_a_source_and_the_cheapest_source_is_used(tmp_path: Path) -> None:
    text = estate_text(tmp_path).replace(
        "    locations: [{cluster: fi, path: " + str(tmp_path / "data" / "corpus") + "}]",
        "    locations: [{cluster: fi, path: " + str(tmp_path / "data" / "corpus") + "}]\n"
        "    bucket: {url: 's3://b/corpus', region: us-east-1}",
    )
    text += "    - {from_provider: aws, to_region: us-east-1, egress_per_gb: 0.0, bandwidth: 10Gbit}\n"
    cands = ranked(text, gpus=4, data=["corpus"])
    by = {c.cluster.name: c for c in cands}
    to_us, to_de = by["us"].data.fits[0].copy, by["de"].data.fits[0].copy
    assert to_us is not None and to_de is not None
    # into us-east-1 the bucket's rule (free, 10 Gbit/s) beats fi's $0.10/GB
    assert (to_us.source, to_us.cost, to_us.seconds) == ("s3://b/corpus", 0.0, 80.0)
    # into de the default $0.05/GB from the bucket still beats fi's $0.10/GB rule
    assert (to_de.source, to_de.cost, to_de.seconds) == ("s3://b/corpus", 5.0, 800.0)
    text = text.replace("egress_per_gb: 0.10", "egress_per_gb: 0.01")
    to_de = {c.cluster.name: c for c in ranked(text, gpus=4, data=["corpus"])}["de"].data.fits[0].copy
    assert to_de is not None and (to_de.source, to_de.cost) == ("cluster fi", 1.0)
    # a pricier but much faster source wins when the gang's hours cost more than the difference:
    # fi $1 + 800 s of a $10/h gang ($3.22) against the bucket $2 + 8 s ($2.02)
    text += "    - {from_provider: aws, to_provider: coreweave, egress_per_gb: 0.02, bandwidth: 100Gbit}\n"
    to_de = {c.cluster.name: c for c in ranked(text, gpus=4, data=["corpus"])}["de"].data.fits[0].copy
    assert to_de is not None and (to_de.source, to_de.cost, to_de.seconds) == ("s3://b/corpus", 2.0, 8.0)


def test_unknown_dataset_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as err:
        ranked(estate_text(tmp_path), gpus=4, data=["imagenet"])
    assert err.value.message == "unknown dataset 'imagenet'"
    assert err.value.hint == "configured datasets: clinical, corpus"


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("{cluster: fi, path: CLIN}", "{cluster: mars, path: CLIN}", 13, "no cluster named 'mars'"),
        ("residency: [eu]\n", "residency: [ch]\n", 12, "no configured cluster satisfies residency ['ch']"),
        ("{cluster: fi, path: CLIN}", "{cluster: fi, pvc: clinical}", 13, "its locations are a path"),
        ("{cluster: fi, path: CLIN}", "{cluster: us, path: CLIN}", 13, "outside the dataset's residency"),
        ("{cluster: fi, path: CLIN}", "{cluster: fi}", 13, "exactly one of path"),
        ("size: 200GB\n    residency", "size: lots\n    residency", 11, "could not parse value and unit"),
        ("name: corpus", "name: clinical", 14, "dataset name 'clinical' is used twice"),
        ("horizon: 8h", "horizon: soon", 18, "cannot read duration 'soon'"),
    ],
)
def test_bad_dataset_configuration_points_at_its_line(
    tmp_path: Path, old: str, new: str, line: int, message: str
) -> None:
    text = estate_text(tmp_path).replace(str(tmp_path / "data" / "clinical"), "CLIN")
    assert old in text
    with pytest.raises(ConfigError) as err:
        parse_config_text(text.replace(old, new, 1), "neo.yaml")
    assert err.value.message.startswith(f"neo.yaml:{line}: "), err.value.message
    assert message in err.value.message


# ---------------------------------------------------------------------------- the CLI on a real estate


def test_bad_input_is_one_line_and_holds_nothing(neo: Neo, tmp_path: Path) -> None:
    use_config(neo, estate_text(tmp_path))
    for args, message in [
        (["reserve", "--gpus", "4", "--data", "imagenet"], "unknown dataset 'imagenet'"),
        (["reserve", "--gpus", "4", "--data", "corpus:wo"], "the mode after ':' is ro or rw"),
        (
            ["reserve", "--gpus", "4", "--data", "clinical", "--cluster", "us"],
            "dataset clinical may not leave residency ['eu']; us is ['us']",
        ),
    ]:
        proc = neo.run(*args)
        assert proc.returncode != 0 and proc.stdout == ""
        assert proc.stderr.splitlines()[0] == f"error: {message}" or message in proc.stderr.splitlines()[0]
        assert "Traceback" not in proc.stderr
    assert neo.json("status") == []
    assert neo.processes() == []


def test_a_missing_dataset_folder_is_refused_before_anything_is_held(neo: Neo, tmp_path: Path) -> None:
    use_config(neo, estate_text(tmp_path))
    (tmp_path / "data" / "corpus" / "shard-0.txt").unlink()
    (tmp_path / "data" / "corpus").rmdir()
    proc = neo.run("reserve", "--gpus", "4", "--cluster", "fi", "--data", "corpus")
    assert proc.returncode != 0
    assert (
        f"dataset corpus: folder {tmp_path / 'data' / 'corpus'} on cluster 'fi' does not exist" in proc.stderr
    )
    assert neo.json("status", "--all") == [], "nothing was even recorded"
    fi = neo.home / "local" / "fi"
    assert not fi.exists() or not any(fi.iterdir())


def test_explain_shows_gpu_price_next_to_data_movement(neo: Neo, tmp_path: Path) -> None:
    use_config(neo, estate_text(tmp_path))
    proc = neo.run("reserve", "--gpus", "4", "--data", "clinical", "--explain", check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["CLUSTER", "REGION", "SHAPE", "$/H", "DATA", "EST.", "8h", "FREE", "VERDICT"]
    assert lines[1].split()[:6] == ["fi", "eu-north1", "2x2", "$12.00", "clinical:", "present"]
    assert "chosen (lowest estimate with capacity)" in lines[1]
    assert "clinical: copy 200.0 GB from cluster fi, 26m40s, $20.00" in lines[2]
    assert lines[3].startswith(" us") and "may not leave residency ['eu']" in lines[3]
    doc: Any = neo.json("reserve", "--gpus", "4", "--data", "clinical", "--explain")
    assert [c["cluster"] for c in doc] == ["fi", "de", "us"]
    assert doc[1]["data"][0]["copy"] == {
        "source": "cluster fi",
        "bytes": 2 * 10**11,
        "seconds": 1600.0,
        "cost": 20.0,
    }
    assert doc[0]["estimate"] == 96.0 and doc[2]["estimate"] is None


def test_neo_datasets_lists_where_each_lives(neo: Neo, tmp_path: Path) -> None:
    use_config(neo, estate_text(tmp_path))
    doc: Any = neo.json("datasets")
    clinical = doc[0]
    assert (
        clinical["name"] == "clinical"
        and clinical["size"] == 2 * 10**11
        and clinical["size_human"] == "200.0 GB"
    )
    assert (
        clinical["held_by"] == ["fi"]
        and clinical["copyable_to"] == ["de"]
        and clinical["forbidden"] == ["us"]
    )
    assert clinical["locations"] == [
        {
            "cluster": "fi",
            "backend": "local",
            "region": "eu-north1",
            "kind": "path",
            "where": f"path {tmp_path / 'data' / 'clinical'}",
        }
    ]
    table = neo.run("datasets", check=True).stdout
    assert "clinical" in table and "200.0 GB" in table and "eu" in table


def test_reserve_with_data_links_it_into_the_gang_and_release_keeps_the_folder(
    neo: Neo, tmp_path: Path
) -> None:
    use_config(neo, estate_text(tmp_path))
    res: Any = neo.json("reserve", "--gpus", "4", "--nodes", "2", "--data", "clinical", "--data", "corpus:rw")
    assert res["cluster"] == "fi"
    uses = {u["name"]: u for u in res["datasets"]}
    assert uses["clinical"]["present"] and uses["clinical"]["read_only"] is True
    assert uses["corpus"]["read_only"] is False
    link = Path(uses["clinical"]["path"])
    assert link == neo.home / "local" / "fi" / res["id"] / "data" / "clinical"
    assert (link / "shard-0.txt").read_text() == "clinical shard 0\n"
    status = neo.run("status", check=True).stdout
    assert "clinical ro, corpus rw" in status
    neo.run("release", res["id"], check=True)
    assert not link.exists() and not link.is_symlink()
    assert (tmp_path / "data" / "clinical" / "shard-0.txt").read_text() == "clinical shard 0\n"
    assert neo.processes() == []


def test_every_pod_gets_neo_data_in_its_environment(neo: Neo, tmp_path: Path) -> None:
    use_config(neo, estate_text(tmp_path))
    ws = tmp_path / "ws"
    ws.mkdir()
    res: Any = neo.json("reserve", "--gpus", "4", "--nodes", "2", "--data", "clinical")
    proc = neo.run(
        "run",
        "-r",
        res["id"],
        "--ranks",
        "all",
        "--cmd",
        'python3 -c \'import os; p=os.environ["NEO_DATA_CLINICAL"]; print(p, open(p+"/shard-0.txt").read().strip())\'',
        cwd=ws,
    )
    assert proc.returncode == 0, proc.stderr
    lines = sorted(line for line in proc.stdout.splitlines() if "shard 0" in line)
    path = res["datasets"][0]["path"]
    assert lines == [f"[node 0 rank 0] {path} clinical shard 0", f"[node 1 rank 1] {path} clinical shard 0"]
    neo.run("release", "--all", check=True)


def test_workspace_neo_yaml_names_the_datasets_its_runs_need(neo: Neo, tmp_path: Path) -> None:
    use_config(neo, estate_text(tmp_path))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "neo.yaml").write_text("datasets: [clinical]\n")
    proc = neo.run("reserve", "--gpus", "4", "--json", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["cluster"] == "fi" and [u["name"] for u in res["datasets"]] == ["clinical"]
    neo.run("release", "--all", check=True)


def test_a_warm_gang_without_the_data_is_not_reused(neo: Neo, tmp_path: Path) -> None:
    use_config(neo, estate_text(tmp_path))
    ws = tmp_path / "ws"
    ws.mkdir()
    plain: Any = neo.json("reserve", "--gpus", "2", "--cluster", "fi")
    show = 'python3 -c \'import os; print("data at", os.environ.get("NEO_DATA_CLINICAL"))\''
    first = neo.run("run", "--gpus", "2", "--cluster", "fi", "--data", "clinical", "--cmd", show, cwd=ws)
    assert first.returncode == 0, first.stderr
    active: Any = neo.json("status")
    assert len(active) == 2, "the warm gang without the data was not reused"
    with_data = next(r for r in active if r["id"] != plain["id"])
    assert f"data at {with_data['datasets'][0]['path']}" in first.stdout
    again = neo.run("run", "--gpus", "2", "--cluster", "fi", "--data", "clinical", "--cmd", show, cwd=ws)
    assert again.returncode == 0 and f"reusing warm reservation {with_data['id']}" in again.stderr
    named = neo.run("run", "-r", plain["id"], "--data", "clinical", "--cmd", show, cwd=ws)
    assert named.returncode != 0 and named.stdout == ""
    assert f"error: reservation {plain['id']} does not hold dataset clinical as asked" in named.stderr
    rw = neo.run("run", "-r", with_data["id"], "--data", "clinical:rw", "--cmd", show, cwd=ws)
    assert rw.returncode != 0 and "does not hold dataset clinical:rw as asked" in rw.stderr
    neo.run("release", "--all", check=True)


def test_copy_placement_says_what_it_would_move(neo: Neo, tmp_path: Path) -> None:
    use_config(neo, estate_text(tmp_path, corpus_size="10GB"))
    proc = neo.run("reserve", "--gpus", "4", "--data", "corpus", "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["cluster"] == "us"
    use = res["datasets"][0]
    assert use["present"] is False and use["path"] is None
    assert use["copy_estimate"] == {"source": "cluster fi", "bytes": 10**10, "seconds": 80.0, "cost": 1.0}
    assert "corpus is not on us: copying it from cluster fi would take ~1m20s and $1.00" in proc.stderr
    neo.run("release", "--all", check=True)
    assert "NEO_DATA" not in os.environ
