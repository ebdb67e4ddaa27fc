"""Tune fusion (and the reranker's first-stage weight) on held-out SciFact *train* claims.

First-stage rankings are computed once per query and cached; each fusion setting is then scored
on the dev claims (the first 100 sorted train query ids, which the reranker never trains on).
Test qrels are only read with --report-test, to print the chosen settings' test figures.

Run: nice -n 10 .venv/bin/python bench/beir_fusion_sweep.py [--reranker DIR] [--report-test]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from datastore.datastore import Datastore
from eval.beir import documents_of, evaluate_run, load_qrels, load_queries
from retriever.config import FusionConfig, RerankerConfig, SparseConfig
from retriever.dense import DenseRetriever
from retriever.fusion import Fusion
from retriever.reranker import CrossEncoderReranker
from retriever.sparse import open_sparse
from retriever.st_embedder import SentenceTransformerEmbedder
from retriever.train_reranker import held_out_queries

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beir" / "scifact"


def score(runs: dict[str, list], qrels: dict) -> dict[str, float]:
    e = evaluate_run({q: documents_of(h)[:100] for q, h in runs.items()}, qrels)
    return {k: round(e[k], 4) for k in ("ndcg@10", "recall@100", "mrr@10")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datastore", default=".cache/openscholar/datastore")
    ap.add_argument("--reranker", default=None)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--report-test", action="store_true")
    ap.add_argument("--test-only", action="store_true", help="Only the test figures of settings chosen on dev.")
    args = ap.parse_args()
    queries = load_queries(SCIFACT / "queries.jsonl")
    train = load_qrels(SCIFACT / "qrels" / "train.tsv")
    splits = {} if args.test_only else {"dev": {q: train[q] for q in held_out_queries(list(train), 100)}}
    if args.report_test or args.test_only:
        splits["test"] = load_qrels(SCIFACT / "qrels" / "test.tsv")
    ds = Datastore.open(args.datastore)
    dense = DenseRetriever(ds, SentenceTransformerEmbedder())
    sparse = open_sparse(ds, SparseConfig())
    reranker = CrossEncoderReranker(RerankerConfig(max_tokens=args.max_tokens), args.reranker) if args.reranker else None
    for split, qrels in splits.items():
        qids = list(qrels)
        texts = [queries[q] for q in qids]
        d = dense.search_batch(texts, 200)
        s = sparse.search_batch(texts, 200)
        print(split, "dense", score(dict(zip(qids, d)), qrels), "bm25", score(dict(zip(qids, s)), qrels), flush=True)
        grid = [FusionConfig(method="rrf", rrf_k=k, dense_weight=w, sparse_weight=1.0) for k, w in itertools.product([10, 30, 60, 100], [0.5, 0.75, 1.0, 1.5, 2.0])]
        grid += [FusionConfig(method="interpolation", dense_weight=w, sparse_weight=1.0) for w in [0.5, 1.0, 1.5, 2.0, 3.0]]
        results = []
        if reranker is not None:
            grid = []
        for cfg in grid:
            fused = {q: Fusion(cfg).fuse(a, b) for q, a, b in zip(qids, d, s)}
            results.append((score(fused, qrels)["ndcg@10"], cfg.method, cfg.rrf_k, cfg.dense_weight))
        results.sort(reverse=True)
        if results:
            print(split, "fusion top 8:", results[:8], flush=True)
            print(split, "rrf k=60 w=1:", next(r for r in results if r[1:] == ("rrf", 60, 1.0)), flush=True)
        if reranker is None:
            continue
        fused = {q: Fusion(FusionConfig()).fuse(a, b) for q, a, b in zip(qids, d, s)}
        t0 = time.perf_counter()
        logits = {q: reranker.score(queries[q], [f"{h.passage.title}. {h.passage.text}" for h in fused[q][: args.window]]) for q in qids}
        print(split, f"rerank scoring {time.perf_counter() - t0:.0f}s for {len(qids)} queries", flush=True)
        for window, w in itertools.product(sorted({10, args.window}), [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]):
            runs = {}
            for q in qids:
                head, tail = fused[q][:window], fused[q][window:]
                z = lambda x: (x - x.mean()) / (x.std() or 1.0)
                lg = logits[q][: len(head)]
                final = z(lg) + w * z(np.array([h.score for h in head])) if w else lg
                order = np.argsort(-final, kind="stable")
                runs[q] = [head[i] for i in order] + tail
            print(split, f"rerank window={window} w={w}", score(runs, qrels), flush=True)


if __name__ == "__main__":
    main()
