"""The Retriever facade over a real datastore: stages, per-stage scores, timings, the per-paper cap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datastore.builder import DatastoreBuilder
from datastore.config import DatastoreConfig
from datastore.datastore import Datastore
from datastore.models import Passage
from retriever.config import RetrievalConfig, SparseConfig
from retriever.dense import DenseRetriever
from retriever.facade import Retrieval, Retriever, cap_per_paper
from retriever.protocols import Hit
from retriever.sparse import open_sparse


def _hit(pid: int, paper: str) -> Hit:
    return Hit(Passage(pid, paper, "", f"text {pid}"), 1.0 / (pid + 1))


@pytest.mark.parametrize("m", [1, 2, 3])
def test_cap_per_paper_is_exact_at_the_bound(m: int) -> None:
    hits = [_hit(i, "A") for i in range(5)] + [_hit(10 + i, "B") for i in range(2)] + [_hit(20, "A")]
    capped = cap_per_paper(hits, m)
    assert sum(h.passage.paper_id == "A" for h in capped) == m  # not m + 1 (the reference's off-by-one)
    assert sum(h.passage.paper_id == "B" for h in capped) == min(m, 2)
    assert [h.passage.passage_id for h in capped] == [h.passage.passage_id for h in hits if h in capped]


@pytest.fixture(scope="module")
def ds(small_datastore: Path) -> Datastore:
    return Datastore.open(small_datastore)


@pytest.fixture(scope="module")
def hybrid(ds: Datastore, embedder) -> Retriever:
    cfg = RetrievalConfig(pipeline="hybrid", top_k=10, candidates=50, max_per_paper=1)
    return Retriever(cfg, dense=DenseRetriever(ds, embedder), sparse=open_sparse(ds, cfg.sparse))


def test_hybrid_records_every_stage(hybrid: Retriever, scifact_subset: dict) -> None:
    claim = next(iter(scifact_subset["claims"].values()))
    result = hybrid.retrieve(claim, 10)
    assert isinstance(result, Retrieval) and len(result.hits) == 10
    assert result.routing is None
    assert set(result.timings) == {"dense_ms", "sparse_ms", "fusion_ms", "fetch_ms", "total_ms"}
    assert result.timings["total_ms"] >= result.timings["dense_ms"] > 0
    for hit in result.hits:
        assert hit.scores["fusion"] == hit.score
        assert "dense" in hit.scores or "bm25" in hit.scores
    assert any("dense" in h.scores and "bm25" in h.scores for h in result.hits)
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)
    assert len({h.passage.paper_id for h in result.hits}) == 10  # max_per_paper = 1


@pytest.mark.parametrize("max_per_paper", [1, 2])
def test_passages_read_late_give_the_hits_of_reading_every_candidate(
    hybrid: Retriever, scifact_subset: dict, max_per_paper: int
) -> None:
    """The pipeline reads passages only for the hits it returns; the result is the one of reading
    all 2 x candidates passages first, fusing the hits and capping them (the earlier pipeline)."""
    cfg = hybrid.config.model_copy(update={"max_per_paper": max_per_paper})
    late = Retriever(cfg, dense=hybrid.dense, sparse=hybrid.sparse)
    reads: list[int] = []
    datastore = hybrid.dense.datastore
    get = datastore.get
    for claim in list(scifact_subset["claims"].values())[:8]:
        datastore.get = lambda ids: reads.append(len(ids)) or get(ids)  # counts what is read, reads it
        try:
            result = late.retrieve(claim, 10)
        finally:
            del datastore.get
        dense = hybrid.dense.search(claim, cfg.candidates)
        sparse = hybrid.sparse.search(claim, cfg.candidates)
        eager = cap_per_paper(late.fusion.fuse(dense, sparse), max_per_paper)[:10]
        assert [(h.passage.passage_id, h.score, h.scores) for h in result.hits] == [
            (h.passage.passage_id, h.score, h.scores) for h in eager
        ]
        assert result.hits[0].passage == eager[0].passage
    assert sum(reads) < 8 * 2 * cfg.candidates / 2  # far fewer passages read than the candidates


@pytest.fixture(scope="module")
def long_paper_store(embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two papers: one long paper (many passages, all about the query) and a short one."""
    src = tmp_path_factory.mktemp("long") / "papers.jsonl"
    body = " ".join(f"Graphene membranes sieve ions under an electric field, run {i}." for i in range(120))
    papers = [
        {"id": "long", "title": "Graphene membranes", "abstract": body},
        {"id": "short", "title": "Ion transport", "abstract": "Graphene membranes sieve ions. " * 3},
    ]
    src.write_text("\n".join(json.dumps(p) for p in papers) + "\n")
    out = src.parent / "ds"
    DatastoreBuilder(embedder, DatastoreConfig(), progress=False).build([f"jsonl:{src}"], out)
    return out


@pytest.mark.parametrize("m", [1, 2, 3])
def test_max_per_paper_bound_through_the_facade(long_paper_store: Path, embedder, m: int) -> None:
    ds = Datastore.open(long_paper_store)
    assert len(ds.passage_ids_of_papers(["long"])) > 3
    cfg = RetrievalConfig(top_k=10, candidates=20, max_per_paper=m)
    r = Retriever(cfg, dense=DenseRetriever(ds, embedder), sparse=open_sparse(ds, SparseConfig()))
    hits = r.search("graphene membranes sieve ions", 10)
    assert sum(h.passage.paper_id == "long" for h in hits) == m
    assert sum(h.passage.paper_id == "short" for h in hits) == 1


def test_a_retriever_needs_a_first_stage() -> None:
    with pytest.raises(ValueError):
        Retriever(RetrievalConfig())


def test_build_retriever_wires_each_pipeline(small_datastore: Path, embedder, tmp_path: Path) -> None:
    import shutil

    from openscholar.indexing import refresh_derived_indexes
    from openscholar.retrieval import build_retriever
    from openscholar.settings import Settings
    from retriever.errors import RetrieverError

    root = tmp_path / "ds"
    shutil.copytree(small_datastore, root, ignore=shutil.ignore_patterns("sparse"))
    settings = Settings()
    assert refresh_derived_indexes(settings, root) == ["bm25s"]
    assert (root / "sparse" / "bm25s" / "stamp.json").is_file() and not (root / "sparse" / "lucene").exists()
    bm25 = build_retriever(settings, root, "bm25")
    assert bm25.dense is None and bm25.sparse is not None and bm25.reranker is None
    hybrid = build_retriever(settings, root, "hybrid", embedder=embedder)
    assert hybrid.dense is not None and hybrid.sparse is not None and hybrid.reranker is None
    assert hybrid.dense.encoder is embedder
    hits = hybrid.search("vitamin D", 5)
    assert len(hits) == 5 and all("fusion" in h.scores for h in hits)
    with pytest.raises(RetrieverError) as unknown:
        build_retriever(settings, root, "splade")
    assert "hybrid+rerank" in unknown.value.hint
