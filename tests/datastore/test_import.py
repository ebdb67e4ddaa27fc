"""`datastore import-openscholar` on a small synthetic release in the reference's exact layout.

The release (bench/synthetic_release.py) has a shard with fewer vectors than passages (a gap in
the middle and a missing tail), pickles written by ``pickle.dump((ids, array))`` as the reference
does, the same vectors as .npy, and a peS2o file for the paper join.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datastore.datastore import Datastore
from datastore.parts import finished_parts
from datastore.pickle_scan import PickleFormatError, scan_embedding_pickle
from datastore.release import UntrustedPickle

REPO = Path(__file__).resolve().parents[2]
N, SHARDS, MISSING = 1500, 3, 0.04


def _generator():
    spec = importlib.util.spec_from_file_location("synthetic_release", REPO / "bench" / "synthetic_release.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def release(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("release")
    info = _generator().write_release(out, N, SHARDS, mismatch_shard=0, missing=MISSING, npy=True, progress=False)
    return {"root": out, "info": info}


def _run(*args: str):
    from cli.main import app

    return CliRunner().invoke(app, ["datastore", "import-openscholar", *args, "--no-progress"])


def _release_records(root: Path, shard: int) -> list[dict]:
    path = root / "passages" / f"raw_passages-{shard}-of-{SHARDS}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def imported(release: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("imported") / "ds"
    src = release["root"]
    res = _run(str(src), "--out", str(root), "--trust-pickles", "--papers", str(src / "pes2o" / "pes2o.jsonl"),
               "--finish", "--json")
    assert res.exit_code == 0, res.output
    return {"root": root, "report": json.loads(res.stdout), "output": res.output}


def test_mismatched_shard_is_joined_on_id_and_reported(release: dict, imported: dict) -> None:
    shard0 = release["info"]["per_shard"][0]
    missing = shard0["vectors_missing"]
    assert missing >= 2
    rep = {s["shard"]: s for s in imported["report"]["shards"]}
    assert rep[0]["alignment"] == "joined_on_id"
    assert rep[0]["passages_in_release"] == shard0["passages"]
    assert rep[0]["vectors_in_release"] == shard0["vectors"] == shard0["passages"] - missing
    assert rep[0]["passages_without_vector"] == missing and rep[0]["vectors_without_passage"] == 0
    assert rep[0]["imported"] == shard0["passages"] - missing
    assert rep[1]["alignment"] == "positional" and rep[1]["passages_without_vector"] == 0
    assert "MISMATCH" in imported["output"] and f"{missing} passages without a vector" in imported["output"]
    # the counts travel with the part (its meta), not only in the CLI's output
    parts = {p.name: p for p in finished_parts(imported["root"])}
    assert parts["part-00000"].meta["import"]["passages_without_vector"] == missing
    ds = Datastore.open(imported["root"])
    assert len(ds) == sum(s["vectors"] for s in release["info"]["per_shard"])
    enc = ds.manifest.encoder
    assert (enc.dim, enc.normalized, enc.pooling, enc.metric) == (768, False, "mean", "ip")


def test_a_stored_vector_finds_its_own_passage(release: dict, imported: dict) -> None:
    """Query = the release's vector of passage (s, id) -> that passage's text first. After shard 0's gap
    a positional pairing would return the passage of another id."""
    src = release["root"]
    ds = Datastore.open(imported["root"])
    vec0 = np.load(src / "embeddings" / "passages_00.npy")
    ids0 = np.load(src / "embeddings" / "passages_00_ids.npy")
    recs0 = _release_records(src, 0)
    gap = int(np.flatnonzero(np.diff(ids0) > 1)[0])  # last row before the gap
    probes = [(0, gap + 1), (0, gap + 5), (0, len(ids0) - 1), (0, 3)]
    vec2 = np.load(src / "embeddings" / "passages_02.npy")
    recs2 = _release_records(src, 2)
    for shard, row in probes:
        query = (vec0 if shard == 0 else vec2)[row].astype(np.float32)
        scores, ids = ds.search(query[None], 3)
        top = ds.get([int(ids[0, 0])])[0]
        want = recs0[int(ids0[row])]["text"]
        assert top.text == want, (shard, row)
        assert scores[0, 0] == pytest.approx(float(query @ query), rel=1e-2)
    scores, ids = ds.search(vec2[7].astype(np.float32)[None], 1)
    assert ds.get([int(ids[0, 0])])[0].text == recs2[7]["text"]


def test_paper_join_gives_fields_and_counts_the_unmatched(release: dict, imported: dict) -> None:
    src = release["root"]
    papers = {}
    for line in (src / "pes2o" / "pes2o.jsonl").read_text().splitlines():
        rec = json.loads(line)
        papers[rec["id"]] = rec
    ds = Datastore.open(imported["root"])
    matched = unmatched = 0
    for p in ds.iter_passages():
        if p.paper_id.startswith("osv3-"):
            unmatched += 1
            assert p.title == ""
            continue
        matched += 1
        rec = papers[p.paper_id]
        assert p.title == rec["title"] and p.year == rec["year"] and p.url == rec["url"]
        words = rec["text"].split()
        assert p.text == " ".join(words[256 * p.chunk_index : 256 * (p.chunk_index + 1)])
        assert p.embed_text == p.text  # the release embedded the chunk without its title
    rep = imported["report"]
    assert matched == sum(s["papers_matched"] for s in rep["shards"]) > 0
    assert unmatched == sum(s["papers_unmatched"] for s in rep["shards"]) > 0


def test_pickles_refused_without_trust(release: dict, tmp_path: Path) -> None:
    res = _run(str(release["root"]), "--out", str(tmp_path / "ds"))
    assert isinstance(res.exception, UntrustedPickle)
    assert "--trust-pickles" in res.exception.hint and "--vectors-format npy" in res.exception.hint
    assert finished_parts(tmp_path / "ds") == []


def test_npy_path_needs_no_trust_and_gives_the_same_parts(release: dict, imported: dict, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    res = _run(str(release["root"]), "--out", str(root), "--vectors-format", "npy", "--shards", "0,2")
    assert res.exit_code == 0, res.output
    got = {p.name: p for p in finished_parts(root)}
    ref = {p.name: p for p in finished_parts(imported["root"])}
    assert sorted(got) == ["part-00000", "part-00002"]
    for name, part in got.items():
        assert part.count == ref[name].count
        assert part.files["vectors.f16.npy"].sha256 == ref[name].files["vectors.f16.npy"].sha256


def test_resume_after_an_interrupted_import(release: dict, imported: dict, tmp_path: Path) -> None:
    src = tmp_path / "release"
    shutil.copytree(release["root"], src, ignore=shutil.ignore_patterns("*.npy"))
    root = tmp_path / "ds"
    # shard 1's file gets a record of another shard near its end: the import stops inside shard 1
    path = src / "passages" / f"raw_passages-1-of-{SHARDS}.jsonl"
    good = path.read_text()
    lines = good.splitlines(keepends=True)
    bad = json.loads(lines[-2])
    bad["shard_id"] = 2
    path.write_text("".join(lines[:-2]) + json.dumps(bad) + "\n" + lines[-1])
    res = _run(str(src), "--out", str(root), "--trust-pickles", "--batch-size", "100")
    assert res.exception is not None and "belongs to shard 2" in str(res.exception)
    assert [p.name for p in finished_parts(root)] == ["part-00000"]
    stamp0 = (root / "parts" / "part-00000" / "part.json").stat().st_mtime_ns
    # a killed run leaves an unfinished part behind: it is never read, and redone
    (root / "parts" / "part-00002.partial-deadbeef").mkdir()
    path.write_text(good)
    res = _run(str(src), "--out", str(root), "--trust-pickles", "--finish", "--json")
    assert res.exit_code == 0, res.output
    status = {s["shard"]: s["status"] for s in json.loads(res.stdout)["shards"]}
    assert status == {0: "kept", 1: "imported", 2: "imported"}
    assert (root / "parts" / "part-00000" / "part.json").stat().st_mtime_ns == stamp0
    assert not list((root / "parts").glob("*.partial*"))
    ref = {p.name: p.files["vectors.f16.npy"].sha256 for p in finished_parts(imported["root"])}
    assert {p.name: p.files["vectors.f16.npy"].sha256 for p in finished_parts(root)} == ref
    assert len(Datastore.open(root)) == len(Datastore.open(imported["root"]))


def test_release_streamed_shard_by_shard_is_the_same_and_finishes_without_its_files(
    release: dict, imported: dict, tmp_path: Path
) -> None:
    """A release too big for the disk: each shard written, imported, deleted; then --finish."""
    gen = _generator()
    src, root = tmp_path / "release", tmp_path / "ds"
    gen.plan_release(src, N, SHARDS, mismatch_shard=0, missing=MISSING, progress=False)
    assert (src / "pes2o" / "pes2o.jsonl").read_bytes() == (release["root"] / "pes2o" / "pes2o.jsonl").read_bytes()
    papers = str(src / "pes2o" / "pes2o.jsonl")
    for s in range(SHARDS):
        gen.write_shard(src, s)
        for sub, name in (("passages", f"raw_passages-{s}-of-{SHARDS}.jsonl"), ("embeddings", f"passages_{s:02d}.pkl")):
            # written by the plan's generator state: byte for byte the shard of the whole release
            assert (src / sub / name).read_bytes() == (release["root"] / sub / name).read_bytes()
        res = _run(str(src), "--out", str(root), "--trust-pickles", "--papers", papers, "--shards", str(s))
        assert res.exit_code == 0, res.output
        gen.delete_shard(src, s)
    assert not list((src / "passages").iterdir()) and not list((src / "embeddings").iterdir())
    res = _run(str(src), "--out", str(root), "--trust-pickles", "--papers", papers, "--finish", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["missing_shards"] == [] and report["manifest_passages"] == imported["report"]["manifest_passages"]
    ref = {p.name: p.files["vectors.f16.npy"].sha256 for p in finished_parts(imported["root"])}
    assert {p.name: p.files["vectors.f16.npy"].sha256 for p in finished_parts(root)} == ref
    assert len(Datastore.open(root)) == len(Datastore.open(imported["root"]))


def test_finish_without_the_release_needs_every_shard_imported(release: dict, tmp_path: Path) -> None:
    src, root = tmp_path / "release", tmp_path / "ds"
    shutil.copytree(release["root"], src, ignore=shutil.ignore_patterns("*.npy"))
    res = _run(str(src), "--out", str(root), "--trust-pickles", "--shards", "0,1")
    assert res.exit_code == 0, res.output
    shutil.rmtree(src / "passages")
    res = _run(str(src), "--out", str(root), "--trust-pickles", "--finish")
    assert res.exit_code != 0 and "no passages/raw_passages-S-of-N.jsonl" in str(res.exception)
    assert not (root / "manifest.json").exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_scanner_reads_pickles_of_each_protocol(tmp_path: Path, protocol: int) -> None:
    rng = np.random.default_rng(protocol)
    arr = rng.standard_normal((3000, 768)).astype(np.float16)
    ids = list(range(3000))
    ids[10], ids[11] = 70_000, 2**40  # BININT, LONG1 among the small ints
    path = tmp_path / "passages_00.pkl"
    with path.open("wb") as fh:
        pickle.dump((ids, arr), fh, protocol=protocol)
    scan = scan_embedding_pickle(path)
    assert scan.protocol == protocol and scan.shape == (3000, 768) and scan.dtype == np.float16
    assert scan.ids.tolist() == ids
    got = scan.array(tmp_path / "decoded.npy")
    assert isinstance(got, np.memmap)  # mapped, not loaded
    assert np.array_equal(got, arr)
    if protocol >= 4:  # the raw bytes sit in the pickle itself: mapped in place
        assert scan.encoding == "raw" and str(got.filename) == str(path)
        with path.open("rb") as fh:
            fh.seek(scan.offset)
            assert fh.read(64) == arr.tobytes()[:64]


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch SHOULD_NOT_EXIST",))


def test_scanner_refuses_other_objects_without_running_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(([0, 1], _Payload()), protocol=4))
    with pytest.raises(PickleFormatError, match="posix.system|os.system|nt.system"):
        scan_embedding_pickle(path)
    assert not (tmp_path / "SHOULD_NOT_EXIST").exists()
    path.write_bytes(pickle.dumps(([0, 1], np.zeros((2, 4), np.float16)), protocol=4)[:-30])
    with pytest.raises(PickleFormatError):
        scan_embedding_pickle(path)
