"""BM25 on SciFact test: passage-level (the datastore's passages, doc = best passage) vs doc-level.

Doc-level indexes BEIR's title + text per document directly (bm25s' published setup, 68.7);
passage-level is what the product serves. Run: .venv/bin/python bench/beir_bm25_levels.py [DATASTORE]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bm25s
import Stemmer

from datastore.datastore import Datastore
from eval.beir import evaluate_run, load_qrels, load_queries
from retriever.config import SparseConfig
from retriever.sparse.bm25s_backend import BM25sRetriever

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beir" / "scifact"


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/openscholar/datastore")
    queries = load_queries(SCIFACT / "queries.jsonl")
    qrels = load_qrels(SCIFACT / "qrels" / "test.tsv")
    qids = list(qrels)
    docs = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()]
    stem = Stemmer.Stemmer("english")
    model = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    model.index(bm25s.tokenize([f"{d['title']} {d['text']}" for d in docs], stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    res, _ = model.retrieve(bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stem, show_progress=False), k=100, show_progress=False)
    doc_run = {q: [docs[i]["_id"] for i in row] for q, row in zip(qids, res)}
    print("doc-level bm25s (SciFact corpus only):", {k: round(v, 4) for k, v in evaluate_run(doc_run, qrels).items() if k != "per_query"})
    ds = Datastore.open(root)
    sparse = BM25sRetriever(ds, SparseConfig())
    hits = sparse.search_batch([queries[q] for q in qids], 300)
    seen_run = {}
    for q, hs in zip(qids, hits):
        order: dict[str, None] = {}
        for h in hs:
            order.setdefault(h.passage.paper_id, None)
        seen_run[q] = list(order)[:100]
    print("passage-level bm25s (datastore, doc = best passage):", {k: round(v, 4) for k, v in evaluate_run(seen_run, qrels).items() if k != "per_query"})


if __name__ == "__main__":
    main()
