"""Datastore round trip on real SciFact data, incremental add/delete, resume, verification errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from datastore.builder import DatastoreBuilder, delete_papers
from datastore.config import DatastoreConfig
from datastore.datastore import Datastore
from datastore.errors import (
    DatastoreCorrupted,
    DatastoreError,
    DatastoreIncomplete,
    DatastoreNotFound,
    EncoderMismatch,
)
from datastore.manifest import MANIFEST
from retriever.dense import DenseRetriever


def _jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def _docs(scifact_subset: dict, ids: list[str]) -> list[dict]:
    return [{"id": i, "title": scifact_subset["docs"][i]["title"], "text": scifact_subset["docs"][i]["text"]} for i in ids]


@pytest.fixture
def tiny(scifact_subset: dict, embedder, tmp_path: Path) -> tuple[Path, list[str]]:
    """A complete 3-shard datastore over 24 real abstracts."""
    ids = sorted(scifact_subset["docs"])[:24]
    src = _jsonl(tmp_path / "a.jsonl", _docs(scifact_subset, ids))
    root = tmp_path / "ds"
    DatastoreBuilder(embedder, DatastoreConfig(shard_size=15), progress=False).build([str(src)], root)
    return root, ids


def test_round_trip_gold_abstract_in_top10(small_datastore: Path, scifact_subset: dict, embedder) -> None:
    ds = Datastore.open(small_datastore, encoder_id=embedder.model_id, dim=embedder.dim, verify="full")
    assert len(ds.shards) > 1, "the fixture is sharded so that the merge across shards is exercised"
    retriever = DenseRetriever(ds, embedder)
    found = 0
    for qid, claim in scifact_subset["claims"].items():
        hits = retriever.search(claim, 10)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        found += any(h.passage.paper_id in scifact_subset["qrels"][qid] for h in hits)
    assert found / len(scifact_subset["claims"]) >= 0.85, found


def test_sharded_search_equals_exact_search_over_all_vectors(small_datastore: Path, embedder) -> None:
    ds = Datastore.open(small_datastore)
    all_vectors = np.concatenate([np.asarray(s.vectors, dtype=np.float32) for s in ds.shards])
    q = embedder.encode_queries(["ketogenic diet and epilepsy", "T cell exhaustion in tumors"]).vectors
    scores, ids = ds.search(q, 20)
    # the flat shards hold fp32 vectors; the stored fp16 copies agree to ~1e-3
    truth = np.argsort(-(all_vectors @ q.T), axis=0)[:20].T
    for row in range(2):
        assert len(set(ids[row]) & set(truth[row])) >= 19
    hits = ds.get(ids[0].tolist())
    assert [h.passage_id for h in hits] == ids[0].tolist()
    assert all(h.text and h.paper_id for h in hits)


def test_passage_text_and_metadata_round_trip(tiny) -> None:
    root, ids = tiny
    ds = Datastore.open(root)
    got = {p.paper_id for p in ds.iter_passages()}
    assert got == set(ids)
    p = ds.get([0])[0]
    assert p.passage_id == 0 and p.title and p.text


def test_identical_passages_are_stored_once(scifact_subset: dict, embedder, tmp_path: Path) -> None:
    ids = sorted(scifact_subset["docs"])[:5]
    docs = _docs(scifact_subset, ids)
    dup = dict(docs[0], id="copy-of-" + docs[0]["id"])
    src = _jsonl(tmp_path / "d.jsonl", docs + [dup, docs[1]])
    root = tmp_path / "ds"
    report = DatastoreBuilder(embedder, DatastoreConfig(), progress=False).build([str(src)], root)
    ds = Datastore.open(root)
    assert report.duplicates >= 2
    assert {p.paper_id for p in ds.iter_passages()} == set(ids)


def test_add_is_incremental_and_delete_hides_papers(tiny, scifact_subset: dict, embedder, tmp_path: Path) -> None:
    root, ids = tiny
    before = Datastore.open(root)
    old_shards = {s.info.name: s.info.files["vectors.f16.npy"].sha256 for s in before.shards}
    new_ids = sorted(scifact_subset["docs"])[24:30]
    src = _jsonl(tmp_path / "more.jsonl", _docs(scifact_subset, new_ids + ids[:2]))  # 2 already present
    report = DatastoreBuilder(embedder, DatastoreConfig(shard_size=15), progress=False).add(root, [str(src)])
    assert report.shards_written == 1 and report.duplicates >= 2
    after = Datastore.open(root, verify="full")
    assert {s.info.name: s.info.files["vectors.f16.npy"].sha256 for s in after.shards[: len(old_shards)]} == old_shards
    assert {p.paper_id for p in after.iter_passages()} == set(ids) | set(new_ids)
    target = new_ids[0]
    title = scifact_subset["docs"][target]["title"]
    retriever = DenseRetriever(after, embedder)
    assert retriever.search(title, 1)[0].passage.paper_id == target
    counts = delete_papers(root, [target])
    assert counts[target] >= 1
    reopened = Datastore.open(root)
    hits = DenseRetriever(reopened, embedder).search(title, 50)
    assert target not in {h.passage.paper_id for h in hits}
    assert len(hits) == 50, "deleted passages are replaced, not just dropped from the top-k"
    assert target not in {p.paper_id for p in reopened.iter_passages()}
    assert reopened.get(reopened.passage_ids_of_papers([target])) == []
    with pytest.raises(DatastoreError, match="no passages for paper ids"):
        delete_papers(root, ["no-such-paper"])


def test_build_into_complete_datastore_is_refused(tiny, embedder) -> None:
    root, _ = tiny
    with pytest.raises(DatastoreError, match="already holds a complete datastore"):
        DatastoreBuilder(embedder, DatastoreConfig(shard_size=15), progress=False).build(["x"], root)


# -- verification errors ----------------------------------------------------------------------

def test_missing_directory_and_manifest(tmp_path: Path) -> None:
    with pytest.raises(DatastoreNotFound, match="no datastore at"):
        Datastore.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatastoreNotFound, match="no manifest.json"):
        Datastore.open(tmp_path / "empty")


def test_encoder_or_dim_mismatch(tiny) -> None:
    root, _ = tiny
    with pytest.raises(EncoderMismatch, match="built with encoder .* but the query encoder is other/model"):
        Datastore.open(root, encoder_id="other/model", dim=384)
    with pytest.raises(EncoderMismatch, match="dim 768"):
        Datastore.open(root, encoder_id="sentence-transformers/all-MiniLM-L6-v2", dim=768)


def test_passage_count_differs_from_vector_count(tiny) -> None:
    import sqlite3

    root, _ = tiny
    db = root / "shard-00001" / "passages.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM passages WHERE id = (SELECT MAX(id) FROM passages)")
    conn.commit()
    conn.execute("VACUUM")
    conn.close()
    manifest = json.loads((root / MANIFEST).read_text())
    # keep the file size in the manifest consistent so that the count check itself is what fails
    manifest["shards"][1]["files"]["passages.sqlite"]["bytes"] = db.stat().st_size
    (root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DatastoreCorrupted, match="passages but .* vectors"):
        Datastore.open(root)


def test_missing_shard(tiny) -> None:
    root, _ = tiny
    shutil.rmtree(root / "shard-00001")
    with pytest.raises(DatastoreCorrupted, match="shard-00001 .* is missing"):
        Datastore.open(root)


def test_truncated_and_corrupted_shard_files(tiny) -> None:
    root, _ = tiny
    vec = root / "shard-00000" / "vectors.f16.npy"
    data = bytearray(vec.read_bytes())
    data[-10] ^= 0xFF  # same size, different content: only the checksum sees it
    vec.write_bytes(bytes(data))
    Datastore.open(root, verify="fast")
    with pytest.raises(DatastoreCorrupted, match="does not match its checksum"):
        Datastore.open(root, verify="full")
    vec.write_bytes(bytes(data[:-100]))
    with pytest.raises(DatastoreCorrupted, match="truncated or replaced"):
        Datastore.open(root)


def test_interrupted_build_never_looks_complete(tiny) -> None:
    root, _ = tiny
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["complete"] = False
    (root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DatastoreIncomplete, match="did not finish"):
        Datastore.open(root)


# -- a real kill mid-build, then resume ---------------------------------------------------------

def _build_cmd(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "cli", "datastore", "build", str(src), "--out", str(out),
            "--shard-size", "12", "--no-progress"]


def test_build_killed_mid_way_then_resumed(scifact_subset: dict, tmp_path: Path) -> None:
    ids = sorted(scifact_subset["docs"])[:50]
    src = _jsonl(tmp_path / "k.jsonl", _docs(scifact_subset, ids))
    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENSCHOLAR_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(_build_cmd(src, out), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline:
        m = out / MANIFEST
        if m.is_file() and len(json.loads(m.read_text()).get("shards", [])) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail(f"build ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with pytest.raises(DatastoreIncomplete):
        Datastore.open(out)
    kept = {s["name"]: s["files"]["vectors.f16.npy"]["sha256"] for s in json.loads((out / MANIFEST).read_text())["shards"]}
    assert len(kept) >= 2
    done = subprocess.run(_build_cmd(src, out), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "kept from an earlier run" in done.stderr
    ds = Datastore.open(out, verify="full")
    assert {s.info.name: s.info.files["vectors.f16.npy"].sha256 for s in ds.shards if s.info.name in kept} == kept
    passages = list(ds.iter_passages())
    assert {p.paper_id for p in passages} == set(ids)
    assert [p.passage_id for p in passages] == list(range(len(passages)))
    assert not list(out.glob("*.partial"))


# -- the CLI --------------------------------------------------------------------------------------

def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_info_search_and_errors(tiny, tmp_path: Path) -> None:
    root, ids = tiny
    info = _cli("datastore", "info", str(root), "--json", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["verification"]["ok"] and summary["passages"] >= 24 and summary["papers"] == 24
    assert summary["encoder"]["id"] == "sentence-transformers/all-MiniLM-L6-v2" and summary["encoder"]["dim"] == 384
    res = _cli("search", "cerebral white matter diffusion", "--datastore", str(root), "-k", "3", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)
    assert len(hits) == 3 and {"passage_id", "paper_id", "title", "text", "score"} <= set(hits[0])
    assert hits[0]["paper_id"] in ids
    missing = _cli("search", "x", "--datastore", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 2 and "no datastore at" in missing.stderr and "hint" in missing.stderr
    shutil.rmtree(root / "shard-00002")
    broken = _cli("datastore", "info", str(root), cwd=tmp_path)
    assert broken.returncode == 2 and "is missing" in broken.stdout
    mismatch = _cli("search", "x", "--datastore", str(root), cwd=tmp_path)
    assert mismatch.returncode == 2 and "shard-00002" in mismatch.stderr


def test_cli_build_reports_malformed_lines_and_strict_fails(scifact_subset: dict, tmp_path: Path) -> None:
    ids = sorted(scifact_subset["docs"])[:3]
    lines = [json.dumps(d) for d in _docs(scifact_subset, ids)]
    src = tmp_path / "m.jsonl"
    src.write_text("\n".join([lines[0], "{broken", lines[1], lines[2]]) + "\n")
    ok = _cli("datastore", "build", str(src), "--out", str(tmp_path / "m"), "--no-progress", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "1 malformed records skipped (first at lines [2])" in ok.stderr
    strict = _cli("datastore", "build", str(src), "--out", str(tmp_path / "s"), "--strict", "--no-progress", cwd=tmp_path)
    assert strict.returncode == 2 and "line 2" in strict.stderr
    with pytest.raises(DatastoreIncomplete):
        Datastore.open(tmp_path / "s")
