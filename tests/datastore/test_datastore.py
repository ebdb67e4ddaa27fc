"""Datastore format 2 on real SciFact data: round trip, dedup across parts, add and delete, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datastore.builder import DatastoreBuilder, delete_papers, plan_parts, tombstone_papers
from datastore.config import DatastoreConfig, IVFPQConfig
from datastore.datastore import Datastore
from datastore.errors import DatastoreError, DatastoreIncomplete, DatastoreNotFound, EncoderMismatch
from datastore.manifest import MANIFEST, read_manifest
from datastore.parts import finished_parts
from retriever.dense import DenseRetriever


def jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def docs_of(scifact_subset: dict, ids: list[str]) -> list[dict]:
    return [{"id": i, "title": scifact_subset["docs"][i]["title"], "text": scifact_subset["docs"][i]["text"]} for i in ids]


@pytest.fixture
def tiny(scifact_subset: dict, embedder, tmp_path: Path) -> tuple[Path, list[str]]:
    """A complete 3-part datastore over 24 real abstracts."""
    ids = sorted(scifact_subset["docs"])[:24]
    src = jsonl(tmp_path / "a.jsonl", docs_of(scifact_subset, ids))
    root = tmp_path / "ds"
    DatastoreBuilder(embedder, DatastoreConfig(part_papers=10), progress=False).build([str(src)], root)
    return root, ids


def test_round_trip_gold_abstract_in_top10(small_datastore: Path, scifact_subset: dict, embedder) -> None:
    ds = Datastore.open(small_datastore, encoder_id=embedder.model_id, dim=embedder.dim, verify="full")
    assert len(ds.parts) > 1, "the fixture has several parts so that ids across parts are exercised"
    retriever = DenseRetriever(ds, embedder)
    found = 0
    for qid, claim in scifact_subset["claims"].items():
        hits = retriever.search(claim, 10)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        found += any(h.passage.paper_id in scifact_subset["qrels"][qid] for h in hits)
    assert found / len(scifact_subset["claims"]) >= 0.85, found


def test_vectors_in_any_order_with_zeros_for_unknown_ids(small_datastore: Path) -> None:
    """``Datastore.vectors`` takes any ids (a caller's list): rows in the order asked across parts,
    zero rows for ids no part holds (the index's re-scoring raises on those instead)."""
    ds = Datastore.open(small_datastore)
    n = ds.manifest.passages
    assert len(ds.parts) > 1
    every = ds.vectors(list(range(n)))
    last_of_first = ds.parts[1].start - 1
    ids = [n - 1, n, last_of_first + 1, -1, 0, last_of_first, n - 1]
    got = ds.vectors(ids)
    assert got.dtype == np.float32 and got.shape == (len(ids), ds.dim)
    for row, i in zip(got, ids, strict=True):
        assert np.array_equal(row, every[i] if 0 <= i < n else np.zeros(ds.dim, np.float32))
    assert ds.vectors([]).shape == (0, ds.dim)


def test_search_equals_exact_search_over_all_stored_vectors(small_datastore: Path, embedder) -> None:
    ds = Datastore.open(small_datastore)
    n = ds.manifest.passages
    all_vectors = ds.vectors(list(range(n)))
    assert all_vectors.shape == (n, ds.dim) and np.all(np.linalg.norm(all_vectors, axis=1) > 0.99)
    q = embedder.encode_queries(["ketogenic diet and epilepsy", "T cell exhaustion in tumors"]).vectors
    _, ids = ds.search(q, 20)
    exact = all_vectors @ q.T
    exact[ds.is_deleted(np.arange(n))] = -np.inf
    truth = np.argsort(-exact, axis=0)[:20].T
    for row in range(2):
        assert len(set(ids[row]) & set(truth[row])) >= 19
    hits = ds.get(ids[0].tolist())
    assert [h.passage_id for h in hits] == ids[0].tolist()
    assert all(h.text and h.paper_id for h in hits)


def test_passages_ids_and_metadata_round_trip(tiny) -> None:
    root, ids = tiny
    ds = Datastore.open(root)
    passages = list(ds.iter_passages())
    assert {p.paper_id for p in passages} == set(ids)
    assert [p.passage_id for p in passages] == list(range(len(passages))) == list(range(len(ds)))
    parts = ds.manifest.parts
    assert len(parts) == 3 and [p.start for p in parts] == [0, parts[0].count, parts[0].count + parts[1].count]
    mid = parts[1].start + 1
    assert [p.passage_id for p in ds.iter_passages(mid, mid + 3)] == [mid, mid + 1, mid + 2]
    p = ds.get([mid])[0]
    assert p.passage_id == mid and p.title and p.text
    assert ds.get([10_000, -5]) == []
    assert ds.next_id == ds.manifest.passages


def test_plan_is_deterministic_and_covers_every_line(scifact_subset: dict, tmp_path: Path) -> None:
    ids = sorted(scifact_subset["docs"])[:23]
    src = jsonl(tmp_path / "p.jsonl", docs_of(scifact_subset, ids))
    cfg = DatastoreConfig(part_papers=5)
    plans = plan_parts([str(src)], cfg)
    assert plans == plan_parts([str(src)], cfg)
    assert [p.name for p in plans] == [f"part-{i:05d}" for i in range(5)]
    assert [p.lines for p in plans] == [5, 5, 5, 5, 3]
    data = src.read_bytes()
    assert b"".join(data[p.byte_start : p.byte_stop] for p in plans) == data
    again = [type(p).model_validate_json(p.model_dump_json()) for p in plans]  # travels as JSON
    assert again == plans


def test_duplicates_across_parts_become_tombstones(scifact_subset: dict, embedder, tmp_path: Path) -> None:
    ids = sorted(scifact_subset["docs"])[:6]
    docs = docs_of(scifact_subset, ids)
    # the copies land in later parts (2 papers per part): the earliest copy must win
    src = jsonl(tmp_path / "d.jsonl", docs + [dict(docs[0], id="copy-0"), dict(docs[1], id="copy-1")])
    root = tmp_path / "ds"
    DatastoreBuilder(embedder, DatastoreConfig(part_papers=2), progress=False).build([str(src)], root)
    ds = Datastore.open(root)
    copies = ds.manifest.parts[-1]
    assert copies.count >= 2 and ds.manifest.duplicates == copies.count
    assert len(ds) == ds.manifest.passages - copies.count
    assert ds.is_deleted(np.arange(copies.start, copies.start + copies.count)).all()
    assert ds.deleted_ids().tolist() == list(range(copies.start, copies.start + copies.count))
    assert {p.paper_id for p in ds.iter_passages()} == set(ids)
    q = np.asarray(ds.vectors([0]))
    _, hit = ds.search(q, 3)
    assert 0 in hit[0] and not set(hit[0]) & set(range(copies.start, copies.start + copies.count))


@pytest.mark.parametrize("kind", ["ivfpq", "flat"])
def test_add_and_delete_on_a_global_index(kind: str, scifact_subset: dict, embedder, tmp_path: Path) -> None:
    # ivfpq through auto: ~120 abstracts are far under auto_flat_max, but flat/HNSW would not fit 0.1 MB
    cfg = DatastoreConfig(part_papers=40, index="auto", max_index_ram_gb=1e-4 if kind == "ivfpq" else 16,
                          ivfpq=IVFPQConfig(nlist=4, m=8, nbits=4, nprobe=4, rescore=100))
    first = sorted(scifact_subset["docs"])[:120]
    root = tmp_path / "ds"
    DatastoreBuilder(embedder, cfg, progress=False).build([str(jsonl(tmp_path / "a.jsonl", docs_of(scifact_subset, first)))], root)
    before = read_manifest(root)
    assert before.index is not None and before.index.kind == kind and len(before.parts) == 3
    old_parts = {p.name: p.files for p in before.parts}
    new_ids = sorted(scifact_subset["docs"])[120:150]
    more = jsonl(tmp_path / "more.jsonl", docs_of(scifact_subset, new_ids + first[:2]))  # 2 already present
    report = DatastoreBuilder(embedder, cfg, progress=False).add(root, [str(more)])
    assert report.parts_written == 1 and report.added == (before.passages, report.manifest.passages)
    after = Datastore.open(root, verify="full")
    assert {p.name: p.files for p in after.manifest.parts[:3]} == old_parts, "existing parts untouched"
    if kind == "ivfpq":  # no retraining: same codebook; old segments not rewritten (same stamps)
        old_index = {r: s for r, s in before.files.items() if r.startswith("index/") and not r.endswith("index.json")}
        assert len(old_index) >= 3
        assert {r: after.manifest.files[r].sha256 for r in old_index} == {r: s.sha256 for r, s in old_index.items()}
        segments = {r: s for r, s in old_index.items() if "seg-" in r}
        assert segments and {r: after.manifest.files[r] for r in segments} == segments
        assert len(after.manifest.files) > len(before.files), "the new passages went into a new segment"
    assert after.manifest.index.ntotal == after.manifest.passages
    assert after.manifest.duplicates >= 2 and len(after) == after.manifest.passages - after.manifest.duplicates
    assert {p.paper_id for p in after.iter_passages()} == set(first) | set(new_ids)
    target = new_ids[0]
    title = scifact_subset["docs"][target]["title"]
    assert DenseRetriever(after, embedder).search(title, 1)[0].passage.paper_id == target
    counts, gone = tombstone_papers(root, [target])
    assert counts[target] == len(gone) >= 1
    reopened = Datastore.open(root)
    assert len(reopened) == len(after) - len(gone) and reopened.manifest.deleted_passages == len(gone)
    hits = DenseRetriever(reopened, embedder).search(title, 50)
    assert target not in {h.passage.paper_id for h in hits}
    assert len(hits) == 50, "deleted passages are replaced, not just dropped from the top-k"
    q = embedder.encode_queries([title]).vectors
    _, ids = reopened.search(q, reopened.manifest.passages)
    assert (ids[0] >= 0).sum() == len(reopened), "every live passage and no tombstone can be returned"
    assert not reopened.is_deleted(ids[0][ids[0] >= 0]).any()
    assert target not in {p.paper_id for p in reopened.iter_passages()}
    assert reopened.passage_ids_of_papers([target]) == [] and reopened.get(gone) == []
    with pytest.raises(DatastoreError, match="no passages for paper ids"):
        delete_papers(root, ["no-such-paper"])


def test_build_into_complete_datastore_is_refused(tiny, embedder) -> None:
    root, _ = tiny
    with pytest.raises(DatastoreError, match="already holds a complete datastore"):
        DatastoreBuilder(embedder, DatastoreConfig(part_papers=10), progress=False).build(["x"], root)


def test_missing_directory_manifest_and_unfinished_build(tiny, tmp_path: Path) -> None:
    with pytest.raises(DatastoreNotFound, match="no datastore at"):
        Datastore.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatastoreNotFound, match="no manifest.json"):
        Datastore.open(tmp_path / "empty")
    root, _ = tiny
    (root / MANIFEST).unlink()
    assert finished_parts(root)
    with pytest.raises(DatastoreIncomplete, match="did not finish"):
        Datastore.open(root)


def test_encoder_or_dim_mismatch(tiny) -> None:
    root, _ = tiny
    with pytest.raises(EncoderMismatch, match="built with encoder .* but the query encoder is other/model"):
        Datastore.open(root, encoder_id="other/model", dim=384)
    with pytest.raises(EncoderMismatch, match="dim 768"):
        Datastore.open(root, encoder_id="sentence-transformers/all-MiniLM-L6-v2", dim=768)


def test_format_1_datastore_is_refused_with_a_rebuild_hint(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    (root / MANIFEST).write_text(json.dumps({"format_version": 1, "complete": True, "shards": []}))
    with pytest.raises(DatastoreError, match="format 1 datastore") as exc:
        Datastore.open(root)
    assert "rebuild" in exc.value.hint and "datastore build" in exc.value.hint


def test_an_add_that_dies_midway_is_undone_by_the_next_writer(tiny, scifact_subset: dict, embedder, tmp_path: Path) -> None:
    from datastore.builder import build_part
    from datastore.finalize import add_parts

    root, ids = tiny
    before = read_manifest(root)
    cfg = DatastoreConfig(part_papers=10)
    new_ids = sorted(scifact_subset["docs"])[30:34]
    plan = plan_parts([str(jsonl(tmp_path / "n.jsonl", docs_of(scifact_subset, new_ids)))], cfg, first=len(before.parts))[0]
    info = build_part(root, plan, embedder, cfg)
    vec = root / "parts" / plan.name / "vectors.f16.npy"
    good = vec.read_bytes()
    vec.write_bytes(b"garbage" + good[7:])  # the add dies after growing tombstones and recording hashes
    with pytest.raises(ValueError):
        add_parts(root, [info], cfg, progress=False)
    assert (root / ".pending.json").is_file() and (root / "tombstones.u8").stat().st_size > before.passages
    with pytest.raises(DatastoreError, match="being changed by an add, delete or compact") as exc:
        Datastore.open(root)
    assert exc.value.retryable
    vec.write_bytes(good)
    manifest = add_parts(root, [info], cfg, progress=False)  # recovers, then adds
    assert not (root / ".pending.json").exists() and not (root / "index.old").exists()
    assert manifest.passages == before.passages + info.count
    assert manifest.duplicates == before.duplicates, "hashes left by the dead add are not taken for duplicates"
    ds = Datastore.open(root, verify="full")
    assert {p.paper_id for p in ds.iter_passages()} == set(ids) | set(new_ids)
    _, hit = ds.search(ds.vectors([info.start]), 1)
    assert hit[0][0] == info.start
