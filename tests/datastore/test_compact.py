"""`datastore compact`: an IVF-PQ datastore with several segments (after adds) merged into one, the codes of
deleted and duplicate passages dropped, real SciFact data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datastore import journal
from datastore.builder import DatastoreBuilder, tombstone_papers
from datastore.config import DatastoreConfig, IVFPQConfig
from datastore.datastore import Datastore
from datastore.errors import DatastoreError
from datastore.finalize import compact_index
from datastore.index.ivfpq import _entries, _lists, _open_ondisk
from datastore.manifest import read_manifest
from datastore.tombstones import open_tombstones

# ivfpq through auto: ~100 abstracts are far under auto_flat_max, but flat/HNSW would not fit 0.1 MB
CFG = DatastoreConfig(part_papers=40, index="auto", max_index_ram_gb=1e-4,
                      ivfpq=IVFPQConfig(nlist=4, m=8, nbits=4, nprobe=4, rescore=100))


def jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def docs_of(scifact_subset: dict, ids: list[str]) -> list[dict]:
    return [{"id": i, "title": scifact_subset["docs"][i]["title"], "text": scifact_subset["docs"][i]["text"]} for i in ids]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "cli", *args], check=False, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def built(scifact_subset: dict, embedder, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An IVF-PQ datastore built, then extended by two adds (3 segments), one paper deleted."""
    docs = sorted(scifact_subset["docs"])
    tmp = tmp_path_factory.mktemp("compact")
    root = tmp / "ds"
    DatastoreBuilder(embedder, CFG, progress=False).build([str(jsonl(tmp / "a.jsonl", docs_of(scifact_subset, docs[:50])))], root)
    for i, chunk in enumerate((docs[50:60], docs[60:70])):
        DatastoreBuilder(embedder, CFG, progress=False).add(root, [str(jsonl(tmp / f"add{i}.jsonl", docs_of(scifact_subset, chunk)))])
    tombstone_papers(root, [docs[5]])
    return root, docs[5]


@pytest.fixture
def segmented(built: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    """A copy of ``built`` (mtimes kept: the stamps hold) for a test to change."""
    root = tmp_path / "ds"
    shutil.copytree(built[0], root)
    return root, built[1]


def _segments(root: Path) -> list[str]:
    return [s["name"] for s in json.loads((root / "index" / "index.json").read_text())["segments"]]


def _held_ids(root: Path) -> np.ndarray:
    """Every id the index's segments hold, read off their inverted lists (one per code)."""
    out = [np.zeros(0, dtype=np.int64)]
    for name in _segments(root):
        header = _open_ondisk(root / "index", name)
        il = _lists(header)
        out += [_entries(il, j)[0] for j in range(il.nlist)]
    return np.concatenate(out)


def _tombstoned(root: Path) -> np.ndarray:
    return np.flatnonzero(np.asarray(open_tombstones(root, read_manifest(root).passages)))


def _search_all(root: Path) -> tuple[np.ndarray, np.ndarray]:
    ds = Datastore.open(root, config=CFG, verify="full")
    q = ds.vectors(list(range(0, ds.manifest.passages, 3)))  # stored vectors as queries, deleted ones included
    return ds.search(q, 10)


def test_compact_merges_the_segments_and_changes_no_result(segmented: tuple[Path, str], tmp_path: Path) -> None:
    root, deleted_paper = segmented
    assert len(_segments(root)) == 3
    before = read_manifest(root)
    scores, ids = _search_all(root)
    res = _cli("datastore", "compact", str(root), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert (report["kind"], report["segments_before"], report["segments_after"], report["changed"]) == ("ivfpq", 3, 1, True)
    assert "3 segments -> 1" in res.stderr
    after = read_manifest(root)
    seg = _segments(root)
    assert len(seg) == 1 and sorted(after.index.files) == sorted(["index.json", "ivfpq.trained.faiss", f"{seg[0]}.faiss", f"{seg[0]}.ivfdata"])
    assert sorted(r for r in after.files if r.startswith("index/")) == sorted(f"index/{f}" for f in after.index.files)
    assert sorted(p.name for p in (root / "index").iterdir()) == sorted(after.index.files), "old segment files removed"
    assert not (root / "index.old").exists() and not (root / "index.tmp").exists() and not (root / ".pending.json").exists()
    # passages and tombstones stay; the index holds only the live passages' codes now
    assert (after.passages, after.deleted) == (before.passages, before.deleted) and before.deleted > 0
    held_before = before.index.ntotal
    assert held_before == before.passages, "before: every passage has a code, tombstoned ones included"
    assert after.index.ntotal == report["vectors"] == after.live == len(_held_ids(root))
    assert report["dropped"] == before.deleted == held_before - after.index.ntotal
    assert not np.isin(_held_ids(root), _tombstoned(root)).any() and len(np.unique(_held_ids(root))) == after.live
    assert f"{before.deleted} codes of deleted or duplicate passages dropped" in res.stderr
    assert {p.name: p.files for p in after.parts} == {p.name: p.files for p in before.parts}
    scores2, ids2 = _search_all(root)  # opened with verify="full": every stamp re-hashed
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_allclose(scores2, scores, rtol=1e-6)
    ds = Datastore.open(root)
    assert not ds.is_deleted(ids2[ids2 >= 0]).any() and deleted_paper not in {p.paper_id for p in ds.get(ids2[:, 0].tolist())}
    verify = _cli("datastore", "verify", str(root), "--no-progress", cwd=tmp_path)
    assert verify.returncode == 0 and "0 bad" in verify.stderr, verify.stderr
    again = _cli("datastore", "compact", str(root), cwd=tmp_path)
    assert again.returncode == 0 and "has 1 segment and no codes of deleted or duplicate passages: nothing to compact" in again.stderr, again.stderr
    assert read_manifest(root).checksum == after.checksum


def test_a_compact_that_dies_before_the_manifest_is_undone_by_the_next_writer(segmented: tuple[Path, str]) -> None:
    root, _ = segmented
    manifest = read_manifest(root)
    scores, ids = _search_all(root)
    # the state a compact leaves when it dies after swapping the new index in, before the manifest commits
    journal.begin(root, manifest, "compact")
    (root / "index").rename(root / "index.old")
    (root / "index").mkdir()
    (root / "index" / "index.json").write_text("{}")
    with pytest.raises(DatastoreError, match="being changed by an add, delete or compact") as exc:
        Datastore.open(root)
    assert exc.value.retryable
    report = compact_index(root, CFG)  # the next writer restores the old index, then compacts it
    assert (report.segments_before, report.segments_after, report.dropped) == (3, 1, manifest.deleted)
    assert read_manifest(root).index.ntotal == manifest.live == len(_held_ids(root))
    assert not (root / ".pending.json").exists() and not (root / "index.old").exists()
    scores2, ids2 = _search_all(root)
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_allclose(scores2, scores, rtol=1e-6)


def test_compact_of_a_flat_datastore_says_there_is_nothing_to_compact(scifact_subset: dict, embedder, tmp_path: Path) -> None:
    docs = sorted(scifact_subset["docs"])[:12]
    root = tmp_path / "flat"
    DatastoreBuilder(embedder, DatastoreConfig(part_papers=5), progress=False).build([str(jsonl(tmp_path / "a.jsonl", docs_of(scifact_subset, docs)))], root)
    DatastoreBuilder(embedder, DatastoreConfig(part_papers=5), progress=False).add(root, [str(jsonl(tmp_path / "b.jsonl", docs_of(scifact_subset, sorted(scifact_subset["docs"])[12:15])))])
    before = read_manifest(root)
    assert before.index is not None and before.index.kind == "flat"
    res = _cli("datastore", "compact", str(root), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "the index is flat, one file with no segments: nothing to compact" in res.stderr
    assert read_manifest(root).checksum == before.checksum, "nothing rewritten"
    missing = _cli("datastore", "compact", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 2 and "hint" in missing.stderr


def test_compact_drops_the_codes_of_deleted_and_duplicate_passages_from_one_segment(
    scifact_subset: dict, embedder, tmp_path: Path
) -> None:
    """One segment (no adds) with a deleted paper and duplicates: compact rewrites it without their codes;
    results, stamps, a later add and a later delete all still hold."""
    docs = sorted(scifact_subset["docs"])
    src = docs_of(scifact_subset, docs[:40])
    src += [{**d, "id": f"copy-{d['id']}"} for d in src[:3]]  # same text under another id: duplicates
    root = tmp_path / "ds"
    DatastoreBuilder(embedder, CFG, progress=False).build([str(jsonl(tmp_path / "a.jsonl", src))], root)
    assert _segments(root) == ["seg-00000"]
    counts, _ = tombstone_papers(root, [docs[7]])
    before = read_manifest(root)
    assert before.duplicates > 0 and before.deleted == before.duplicates + counts[docs[7]]
    assert len(_held_ids(root)) == before.index.ntotal == before.passages
    index_bytes = sum(s.bytes for r, s in before.files.items() if r.startswith("index/"))
    scores, ids = _search_all(root)
    assert not np.isin(ids, _tombstoned(root)).any()

    res = _cli("datastore", "compact", str(root), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert (report["segments_before"], report["segments_after"], report["changed"]) == (1, 1, True)
    assert report["dropped"] == before.deleted and report["vectors"] == before.live
    assert report["index_bytes_before"] == index_bytes > report["index_bytes_after"]
    assert "1 segment -> 1" in res.stderr and f"{before.deleted} codes of deleted or duplicate passages dropped" in res.stderr
    after = read_manifest(root)
    assert _segments(root) == ["seg-00001"] and not (root / "index" / "seg-00000.ivfdata").exists()
    held = _held_ids(root)
    assert after.index.ntotal == len(held) == before.live and not np.isin(held, _tombstoned(root)).any()
    assert (after.passages, after.deleted, after.duplicates) == (before.passages, before.deleted, before.duplicates)
    assert np.array_equal(_tombstoned(root), np.flatnonzero(np.asarray(open_tombstones(root, before.passages))))
    assert {p.name: p.files for p in after.parts} == {p.name: p.files for p in before.parts}
    scores2, ids2 = _search_all(root)  # verify="full": every stamp re-hashed, index ntotal checked on open
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_array_equal(scores2, scores)
    verify = _cli("datastore", "verify", str(root), "--no-progress", cwd=tmp_path)
    assert verify.returncode == 0 and "0 bad" in verify.stderr, verify.stderr

    # a later add: the next segment, ntotal counts on from the codes kept
    DatastoreBuilder(embedder, CFG, progress=False).add(root, [str(jsonl(tmp_path / "b.jsonl", docs_of(scifact_subset, docs[40:48])))])
    added = read_manifest(root)
    fresh = added.passages - after.passages
    assert fresh > 0 and _segments(root) == ["seg-00001", "seg-00002"]
    assert added.index.ntotal == len(_held_ids(root)) == after.live + fresh
    ds = Datastore.open(root, config=CFG, verify="full")
    new_ids = list(range(after.passages, added.passages))
    _, top = ds.search(ds.vectors(new_ids), 1)
    assert (top[:, 0] == np.asarray(new_ids)).mean() >= 0.9, "the added passages are found"
    # a later delete: its ids still have codes, the exclusion keeps them out; the next compact drops them
    gone = ds.passage_ids_of_papers([docs[20]])
    ds.close()
    tombstone_papers(root, [docs[20]])
    _, hits = _search_all(root)
    assert gone and not np.isin(hits, gone).any() and np.isin(gone, _held_ids(root)).all()
    again = compact_index(root, CFG)
    assert (again.segments_before, again.segments_after, again.dropped) == (2, 1, len(gone))
    assert not np.isin(gone, _held_ids(root)).any() and read_manifest(root).index.ntotal == read_manifest(root).live
