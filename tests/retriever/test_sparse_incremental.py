"""Sparse indexes follow the datastore by the change only: add appends, delete writes no index data,
and the result scores like a full rebuild over the same live passages; `auto` picks by size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from datastore.builder import DatastoreBuilder, delete_papers
from datastore.config import DatastoreConfig
from datastore.datastore import Datastore
from retriever.config import RetrievalConfig, SparseConfig
from retriever.errors import RetrieverError
from retriever.sparse import Change, open_sparse, pick_backend
from retriever.sparse.bm25s_backend import BM25sRetriever
from retriever.sparse.protocol import index_dir, read_stamp
from retriever.sparse.source import next_id

SCIFACT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "beir" / "scifact"


@pytest.fixture(scope="module")
def extra_corpus(scifact_subset: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten SciFact abstracts that are not in the small datastore, as a BEIR dir to `add`."""
    root = tmp_path_factory.mktemp("extra")
    docs = []
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if d["_id"] not in scifact_subset["docs"]:
                docs.append(d)
            if len(docs) == 10:
                break
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return root


def _copy(small_datastore: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(small_datastore, root, ignore=shutil.ignore_patterns("sparse"))
    return root


def _files(directory: Path) -> dict[str, int]:
    """Every file under ``directory`` (but the stamp) with its mtime: what an update rewrote shows."""
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file() and p.name != "stamp.json"}


def _delete_and_add(root: Path, embedder, extra: Path) -> tuple[Change, Change, list[str]]:
    """Delete two papers, then add the extra corpus; returns both changes and the deleted paper ids."""
    ds = Datastore.open(root)
    victims = sorted({p.paper_id for p in ds.iter_passages()})[:2]
    ids = ds.passage_ids_of_papers(victims)
    delete_papers(root, victims)
    start = next_id(ds)
    DatastoreBuilder(embedder, DatastoreConfig(shard_size=120), progress=False).add(root, [f"beir:{extra}"])
    stop = next_id(Datastore.open(root))
    assert stop > start
    return Change(deleted=ids), Change(added=(start, stop)), victims


def _scores_by_query(retriever, queries: list[str], k: int) -> list[dict[int, float]]:
    return [{h.passage.passage_id: h.score for h in hits} for hits in retriever.search_batch(queries, k)]


def test_bm25s_add_and_delete_touch_only_the_change_and_score_like_a_rebuild(
    small_datastore: Path, tmp_path: Path, embedder, extra_corpus: Path, scifact_subset: dict
) -> None:
    root = _copy(small_datastore, tmp_path)
    cfg = SparseConfig(backend="bm25s", segment_passages=150)
    BM25sRetriever(Datastore.open(root), cfg)
    directory = index_dir(root, "bm25s")
    built = _files(directory)
    deleted, added, _ = _delete_and_add(root, embedder, extra_corpus)

    # A delete writes no index data (tombstones are read at query time), only the stamp.
    assert BM25sRetriever.sync(Datastore.open(root), cfg, deleted) == "updated"  # the add is caught up too
    after = _files(directory)
    assert {k: v for k, v in after.items() if k in built} == built  # no segment rewritten
    new = sorted({k.split("/")[0] for k in after} - {k.split("/")[0] for k in built})
    start, stop = added.added or (0, 0)
    assert new == [f"seg-{start:012d}-{stop:012d}"]  # one segment over exactly the added ids
    assert BM25sRetriever.sync(Datastore.open(root), cfg, added) == "current"

    ds = Datastore.open(root)
    queries = [*list(scifact_subset["claims"].values())[:10], "cell biology of tumours"]
    incremental = _scores_by_query(BM25sRetriever(ds, cfg), queries, 400)
    assert deleted.deleted and not set(deleted.deleted) & {i for s in incremental for i in s}
    BM25sRetriever.build_index(ds, cfg)
    rebuilt = _scores_by_query(BM25sRetriever(ds, cfg), queries, 400)
    for a, b in zip(incremental, rebuilt, strict=True):
        assert set(a) == set(b) and len(a) > 0
        np.testing.assert_allclose([a[i] for i in sorted(a)], [b[i] for i in sorted(b)], rtol=1e-12)
    # The added abstracts are found by their own titles.
    title = json.loads((extra_corpus / "corpus.jsonl").read_text().splitlines()[0])["title"]
    assert BM25sRetriever(ds, cfg).search(title, 1)[0].passage.title == title


def test_a_stale_index_is_refused_or_caught_up_on_open_never_served_stale(
    small_datastore: Path, tmp_path: Path, embedder, extra_corpus: Path
) -> None:
    root = _copy(small_datastore, tmp_path)
    cfg = SparseConfig(backend="bm25s")
    open_sparse(Datastore.open(root), cfg)
    segments = read_stamp(index_dir(root, "bm25s"))["segments"]  # type: ignore[index]
    _delete_and_add(root, embedder, extra_corpus)
    ds = Datastore.open(root)
    with pytest.raises(RetrieverError) as exc:
        open_sparse(ds, cfg, build=False)
    assert "behind" in str(exc.value)
    open_sparse(ds, cfg)  # caught up by the change: the old segments stay, one is added
    stamp = read_stamp(index_dir(root, "bm25s"))
    assert stamp is not None and stamp["segments"][: len(segments)] == segments and len(stamp["segments"]) == len(segments) + 1
    assert stamp["indexed_to"] == next_id(ds) and stamp["live_passages"] == len(ds)


def test_a_rebuilt_datastore_or_new_parameters_rebuild_the_index(small_datastore: Path, tmp_path: Path) -> None:
    root = _copy(small_datastore, tmp_path)
    ds = Datastore.open(root)
    assert BM25sRetriever.sync(ds, SparseConfig(backend="bm25s")) == "rebuilt"  # none yet
    assert BM25sRetriever.sync(ds, SparseConfig(backend="bm25s")) == "current"
    assert BM25sRetriever.sync(ds, SparseConfig(backend="bm25s", k1=1.2)) == "rebuilt"


def test_auto_picks_bm25s_below_the_threshold_and_lucene_from_it() -> None:
    cfg = SparseConfig()
    assert cfg.backend == "auto" and cfg.auto_lucene_from == 250_000
    assert pick_backend(249_999, cfg) == "bm25s"
    assert pick_backend(250_000, cfg) == "lucene"
    assert pick_backend(10**9, cfg, "bm25s") == "bm25s"  # an explicit backend is kept
    assert pick_backend(0, SparseConfig(auto_lucene_from=0)) == "lucene"


def test_refresh_touches_only_the_backend_the_settings_use(small_datastore: Path, tmp_path: Path) -> None:
    from openscholar.indexing import refresh_derived_indexes
    from openscholar.settings import Settings

    root = _copy(small_datastore, tmp_path)
    assert refresh_derived_indexes(Settings(retrieval=RetrievalConfig(pipeline="dense")), root) == []
    assert not (root / "sparse").exists()
    assert refresh_derived_indexes(Settings(), root, Change()) == ["bm25s"]  # auto, small datastore
    assert (index_dir(root, "bm25s") / "stamp.json").is_file() and not index_dir(root, "lucene").exists()


@pytest.mark.lucene
def test_auto_over_the_threshold_serves_lucene_and_refresh_builds_only_lucene(small_datastore: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyserini", reason="the lucene extra is not installed")
    from openscholar.indexing import refresh_derived_indexes
    from openscholar.settings import Settings
    from retriever.sparse.lucene_backend import LuceneRetriever

    root = _copy(small_datastore, tmp_path)
    settings = Settings(retrieval=RetrievalConfig(sparse=SparseConfig(auto_lucene_from=100)))
    assert refresh_derived_indexes(settings, root) == ["lucene"]
    assert index_dir(root, "lucene").is_dir() and not index_dir(root, "bm25s").exists()
    assert isinstance(open_sparse(Datastore.open(root), settings.retrieval.sparse, build=False), LuceneRetriever)


@pytest.mark.lucene
def test_lucene_appends_and_deletes_in_place_and_scores_like_a_rebuild(
    small_datastore: Path, tmp_path: Path, embedder, extra_corpus: Path, scifact_subset: dict
) -> None:
    pytest.importorskip("pyserini", reason="the lucene extra is not installed")
    from retriever.sparse.lucene_backend import LuceneRetriever

    root = _copy(small_datastore, tmp_path)
    cfg = SparseConfig(backend="lucene", lucene_threads=2)
    LuceneRetriever(Datastore.open(root), cfg)
    index = index_dir(root, "lucene") / "index"
    segments_before = {p.name for p in index.glob("*.si")}
    deleted, added, _ = _delete_and_add(root, embedder, extra_corpus)
    ds = Datastore.open(root)
    assert LuceneRetriever.sync(ds, cfg, added) == "updated"
    assert LuceneRetriever.sync(ds, cfg, deleted) == "current"
    # Appended as a new Lucene segment; the old segments' files are still there (deletes only
    # add a live-docs file next to them).
    segments_after = {p.name for p in index.glob("*.si")}
    assert segments_before < segments_after

    queries = [*list(scifact_subset["claims"].values())[:10], "cell biology of tumours"]
    incremental = _scores_by_query(LuceneRetriever(ds, cfg), queries, 50)
    gone = set(deleted.deleted)
    assert gone and not gone & {i for s in incremental for i in s}
    title = json.loads((extra_corpus / "corpus.jsonl").read_text().splitlines()[0])["title"]
    assert LuceneRetriever(ds, cfg).search(title, 1)[0].passage.title == title

    # Lucene counts deleted docs in df/N/avgdl until they are merged away; after that the
    # scores are those of a rebuild over the live passages.
    LuceneRetriever.expunge_deletes(ds)
    expunged = _scores_by_query(LuceneRetriever(ds, cfg), queries, 50)
    LuceneRetriever.build_index(ds, cfg)
    rebuilt = _scores_by_query(LuceneRetriever(ds, cfg), queries, 50)
    for a, b in zip(expunged, rebuilt, strict=True):
        assert set(a) == set(b) and len(a) > 0
        np.testing.assert_allclose([a[i] for i in sorted(a)], [b[i] for i in sorted(b)], atol=1e-6)
