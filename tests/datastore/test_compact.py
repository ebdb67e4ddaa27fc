"""`datastore compact`: an IVF-PQ datastore with several segments (after adds) merged into one, real SciFact data."""

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
from datastore.manifest import read_manifest

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
    assert (after.passages, after.deleted, after.index.ntotal) == (before.passages, before.deleted, before.index.ntotal)
    assert {p.name: p.files for p in after.parts} == {p.name: p.files for p in before.parts}
    scores2, ids2 = _search_all(root)  # opened with verify="full": every stamp re-hashed
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_allclose(scores2, scores, rtol=1e-6)
    ds = Datastore.open(root)
    assert not ds.is_deleted(ids2[ids2 >= 0]).any() and deleted_paper not in {p.paper_id for p in ds.get(ids2[:, 0].tolist())}
    verify = _cli("datastore", "verify", str(root), "--no-progress", cwd=tmp_path)
    assert verify.returncode == 0 and "0 bad" in verify.stderr, verify.stderr
    again = _cli("datastore", "compact", str(root), cwd=tmp_path)
    assert again.returncode == 0 and "has 1 segment: nothing to compact" in again.stderr, again.stderr
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
    assert (report.segments_before, report.segments_after) == (3, 1)
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
