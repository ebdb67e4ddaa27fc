"""BM25 scores of both sparse backends checked, array against array, with a reference implementation.

The reference is the textbook Lucene-variant BM25 written out below (what bm25s calls
``method="lucene"`` and Lucene's BM25Similarity computes): for each query token t (repeated
tokens count again), ``idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))`` with
``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))`` over the live passages. Tokens come from each
backend's own analyzer (bm25s' tokenizer; Anserini's English analyzer), so what is checked is the
scoring and the corpus statistics, over every passage that matches, not just the top few.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from datastore.datastore import Datastore
from retriever.config import SparseConfig
from retriever.sparse import index_text
from retriever.sparse.bm25s_backend import BM25sRetriever, _stemmer

# (k1, b) of each backend's published setup: bm25s 1.5/0.75, Anserini flat 0.9/0.4.
BM25S = {"k1": 1.5, "b": 0.75}
LUCENE = {"k1": 0.9, "b": 0.4}


def reference_bm25(
    docs: dict[int, list[str]], query: list[str], k1: float, b: float, length: Callable[[int], float] = float
) -> dict[int, float]:
    """Exact Lucene-variant BM25 of every doc that shares a token with ``query`` (scores > 0).

    ``length`` maps a doc's token count to the length used in the norm (Lucene stores it lossily).
    """
    n = len(docs)
    avgdl = sum(len(t) for t in docs.values()) / n
    tfs = {pid: Counter(toks) for pid, toks in docs.items()}
    df = Counter(t for c in tfs.values() for t in c)
    out: dict[int, float] = {}
    for pid, tf in tfs.items():
        dl = length(len(docs[pid]))
        s = 0.0
        for t in query:
            if tf[t]:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * tf[t] / (tf[t] + k1 * (1 - b + b * dl / avgdl))
        if s > 0:
            out[pid] = s
    return out


def assert_same_scores(got: dict[int, float], want: dict[int, float], *, rtol: float = 0.0, atol: float = 0.0) -> None:
    assert set(got) == set(want), f"{len(set(got) ^ set(want))} passages differ"
    ids = sorted(want)
    np.testing.assert_allclose([got[i] for i in ids], [want[i] for i in ids], rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def scored_datastore(small_datastore: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scores") / "ds"
    shutil.copytree(small_datastore, root, ignore=shutil.ignore_patterns("sparse"))
    return root


def _queries(scifact_subset: dict) -> list[str]:
    claims = list(scifact_subset["claims"].values())[:12]
    return [*claims, "cell cell cell", "vitamin d deficiency and bone density"]


def test_bm25s_scores_equal_the_reference_over_every_passage(scored_datastore: Path, scifact_subset: dict) -> None:
    import bm25s

    ds = Datastore.open(scored_datastore)
    # segment_passages=70: the passages live in several segments, so corpus statistics must be global.
    cfg = SparseConfig(backend="bm25s", segment_passages=70, **BM25S)
    retriever = BM25sRetriever(ds, cfg)
    assert len(retriever._load()) == math.ceil(len(ds) / 70) > 1
    passages = list(ds.iter_passages())
    stem = _stemmer("english")
    tokens = bm25s.tokenize([index_text(p) for p in passages], stopwords="en", stemmer=stem, return_ids=False, show_progress=False)
    docs = {p.passage_id: list(t) for p, t in zip(passages, tokens, strict=True)}
    # A second implementation: bm25s itself, one in-memory index over the same passages.
    model = bm25s.BM25(method="lucene", **BM25S)
    model.index(bm25s.tokenize([index_text(p) for p in passages], stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    for query in _queries(scifact_subset):
        q = bm25s.tokenize([query], stopwords="en", stemmer=stem, return_ids=False, show_progress=False)[0]
        got = retriever.scores(query)
        assert_same_scores(got, reference_bm25(docs, list(q), **BM25S), rtol=1e-9)
        known = [model.vocab_dict[t] for t in q if t in model.vocab_dict]
        full = model.get_scores_from_ids(known) if known else np.zeros(len(passages))
        theirs = {passages[i].passage_id: float(full[i]) for i in np.flatnonzero(full)}
        assert_same_scores(got, theirs, rtol=2e-6)  # bm25s stores float32 scores
    assert len(got) > 10  # the last query matched many passages


def test_bm25s_scores_after_a_delete_count_live_passages_only(scored_datastore: Path, tmp_path: Path, scifact_subset: dict) -> None:
    import bm25s

    from datastore.builder import delete_papers

    root = tmp_path / "ds"
    shutil.copytree(scored_datastore, root, ignore=shutil.ignore_patterns("sparse"))
    cfg = SparseConfig(backend="bm25s", segment_passages=70, **BM25S)
    BM25sRetriever(Datastore.open(root), cfg)
    before = len(Datastore.open(root))
    victims = sorted({p.paper_id for p in Datastore.open(root).iter_passages()})[::7]
    delete_papers(root, victims)
    ds = Datastore.open(root)
    retriever = BM25sRetriever(ds, cfg)
    passages = list(ds.iter_passages())
    assert len(passages) == len(ds) < before
    stem = _stemmer("english")
    tokens = bm25s.tokenize([index_text(p) for p in passages], stopwords="en", stemmer=stem, return_ids=False, show_progress=False)
    docs = {p.passage_id: list(t) for p, t in zip(passages, tokens, strict=True)}
    for query in _queries(scifact_subset):
        q = bm25s.tokenize([query], stopwords="en", stemmer=stem, return_ids=False, show_progress=False)[0]
        assert_same_scores(retriever.scores(query), reference_bm25(docs, list(q), **BM25S), rtol=1e-9)


@pytest.mark.lucene
def test_lucene_scores_equal_the_reference_over_every_passage(scored_datastore: Path, scifact_subset: dict) -> None:
    pytest.importorskip("pyserini", reason="the lucene extra is not installed")
    from retriever.sparse.lucene_backend import LuceneRetriever, _autoclass, search_index

    ds = Datastore.open(scored_datastore)
    retriever = LuceneRetriever(ds, SparseConfig(backend="lucene", **LUCENE))
    analyzer = _autoclass("io.anserini.analysis.DefaultEnglishAnalyzer").newDefaultInstance()
    analyze = _autoclass("io.anserini.analysis.AnalyzerUtils").analyze
    small_float = _autoclass("org.apache.lucene.util.SmallFloat")
    passages = list(ds.iter_passages())
    docs = {p.passage_id: list(analyze(analyzer, index_text(p)).toArray()) for p in passages}

    def lucene_length(n: int) -> float:  # Lucene keeps a doc's length in one byte (SmallFloat)
        return float(small_float.byte4ToInt(small_float.intToByte4(n)))

    for query in _queries(scifact_subset):
        q = list(analyze(analyzer, query).toArray())
        got = dict(search_index(retriever._load(), [query], len(passages))[0])
        # Anserini rounds scores to 4 decimals and subtracts 1e-6 per tied rank.
        assert_same_scores(got, reference_bm25(docs, q, length=lucene_length, **LUCENE), atol=5e-4)
