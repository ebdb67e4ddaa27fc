"""Tune fusion (and the reranker's first-stage weight) on held-out SciFact *train* claims.

First-stage rankings are computed once per query and cached; each fusion setting is then scored
on the dev claims (the first 100 sorted train query ids, which neither the reranker nor the
bio-claims expert trains on). Test qrels are only read with --report-test / --test-only, to print
the settings' test figures next to dev.

With ``--expert NAME`` a third first stage joins: the base encoder with router expert NAME's query
adapter (e.g. bio-claims), fused with bm25 and/or the base dense ranking by weighted RRF.

Run: nice -n 10 .venv/bin/python bench/beir_fusion_sweep.py [--reranker DIR] [--expert bio-claims] [--report-test]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from datastore.datastore import Datastore
from eval.beir import documents_of, evaluate_run, load_qrels, load_queries
from retriever.config import FusionConfig, RerankerConfig, SparseConfig
from retriever.dense import DenseRetriever
from retriever.fusion import Fusion, reciprocal_rank_fusion
from retriever.protocols import QueryVectors
from retriever.reranker import CrossEncoderReranker
from retriever.sparse import open_sparse
from retriever.st_embedder import SentenceTransformerEmbedder
from retriever.train_reranker import held_out_queries

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beir" / "scifact"
RESULTS = Path(__file__).resolve().parent / "results"


def score(runs: dict[str, list], qrels: dict) -> dict[str, float]:
    e = evaluate_run({q: documents_of(h)[:100] for q, h in runs.items()}, qrels)
    return {k: round(e[k], 4) for k in ("ndcg@10", "recall@100", "mrr@10")}


class ExpertEncoder:
    """The base encoder with one router expert's query adapter (a QueryEncoder for DenseRetriever)."""

    def __init__(self, name: str, embedder: SentenceTransformerEmbedder, experts_dir: Path | None = None) -> None:
        from router.backbone import Backbone
        from router.config import PACKAGED_EXPERTS
        from router.encoder import RouterQueryEncoder

        self.model_id, self.dim = embedder.model_id, embedder.dim
        backbone = Backbone(embedder.model_id, st_model=embedder._load)
        self.router = RouterQueryEncoder(backbone, experts_dir or PACKAGED_EXPERTS, experts=[name], bf16=lambda: embedder.uses_bf16)
        self.name = name

    def encode_queries(self, texts: list[str]) -> QueryVectors:
        return QueryVectors(self.router.encode_with(self.name, texts), [{"expert": self.name}] * len(texts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datastore", default=".cache/openscholar/datastore")
    ap.add_argument("--reranker", default=None)
    ap.add_argument("--expert", default=None, help="Router expert whose query adapter is a third first stage.")
    ap.add_argument("--experts-dir", type=Path, default=None, help="Where --expert lives (default: the packaged experts).")
    ap.add_argument("--no-fusion", action="store_true", help="Only the first stages (no fusion or reranking rows).")
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--report-test", action="store_true")
    ap.add_argument("--test-only", action="store_true", help="Only the test figures of settings chosen on dev.")
    ap.add_argument("--out", type=Path, default=None, help="Save every figure as JSON here.")
    args = ap.parse_args()
    queries = load_queries(SCIFACT / "queries.jsonl")
    train = load_qrels(SCIFACT / "qrels" / "train.tsv")
    splits = {} if args.test_only else {"dev": {q: train[q] for q in held_out_queries(list(train), 100)}}
    if args.report_test or args.test_only:
        splits["test"] = load_qrels(SCIFACT / "qrels" / "test.tsv")
    ds = Datastore.open(args.datastore)
    embedder = SentenceTransformerEmbedder()
    dense = DenseRetriever(ds, embedder)
    expert = DenseRetriever(ds, ExpertEncoder(args.expert, embedder, args.experts_dir)) if args.expert else None
    sparse = open_sparse(ds, SparseConfig())
    reranker = CrossEncoderReranker(RerankerConfig(max_tokens=args.max_tokens), args.reranker) if args.reranker else None
    saved: dict[str, dict] = {}
    for split, qrels in splits.items():
        out = saved.setdefault(split, {})
        qids = list(qrels)
        texts = [queries[q] for q in qids]
        first = {"dense": dense.search_batch(texts, 200), "bm25": sparse.search_batch(texts, 200)}
        if expert is not None:
            first["expert"] = expert.search_batch(texts, 200)
        for name, runs in first.items():
            out[name] = score(dict(zip(qids, runs)), qrels)
        print(split, {k: v["ndcg@10"] for k, v in out.items()}, flush=True)
        if args.no_fusion:
            continue
        grid = [FusionConfig(method="rrf", rrf_k=k, dense_weight=w, sparse_weight=1.0) for k, w in itertools.product([10, 30, 60, 100], [0.5, 0.75, 1.0, 1.5, 2.0])]
        grid += [FusionConfig(method="interpolation", dense_weight=w, sparse_weight=1.0) for w in [0.5, 1.0, 1.5, 2.0, 3.0]]
        results = []
        if reranker is not None or expert is not None:
            grid = []
        for cfg in grid:
            fused = {q: Fusion(cfg).fuse(a, b) for q, a, b in zip(qids, first["dense"], first["bm25"])}
            results.append((score(fused, qrels)["ndcg@10"], cfg.method, cfg.rrf_k, cfg.dense_weight))
        results.sort(reverse=True)
        if results:
            print(split, "fusion top 8:", results[:8], flush=True)
            print(split, "rrf k=60 w=1:", next(r for r in results if r[1:] == ("rrf", 60, 1.0)), flush=True)
        fusions = {"rrf(bm25,dense)": {"bm25": 1.0, "dense": 1.0}}
        if expert is not None:
            for wd, we in itertools.product([0.0, 0.5, 1.0], [0.5, 1.0, 1.5, 2.0]):
                fusions[f"rrf(bm25,dense={wd},expert={we})"] = {"bm25": 1.0, "dense": wd, "expert": we}
        fused_runs = {}
        for fname, weights in fusions.items():
            names = [n for n, w in weights.items() if w > 0]
            fused_runs[fname] = {
                q: reciprocal_rank_fusion({n: first[n][i] for n in names}, {n: weights[n] for n in names}, 60)
                for i, q in enumerate(qids)
            }
            out[fname] = score(fused_runs[fname], qrels)
            print(split, fname, out[fname], flush=True)
        if reranker is None:
            continue
        for fname in fusions if expert is None else ["rrf(bm25,dense)", *sorted(fusions, key=lambda f: -saved.get("dev", out)[f]["ndcg@10"])[:2]]:
            fused = fused_runs[fname]
            t0 = time.perf_counter()
            logits = {q: reranker.score(queries[q], [f"{h.passage.title}. {h.passage.text}" for h in fused[q][: args.window]]) for q in qids}
            print(split, f"rerank scoring {time.perf_counter() - t0:.0f}s for {len(qids)} queries", flush=True)
            for window, w in itertools.product(sorted({10, args.window}), [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]):
                runs = {}
                for q in qids:
                    head, tail = fused[q][:window], fused[q][window:]
                    z = lambda x: (x - x.mean()) / (x.std() or 1.0)
                    lg = logits[q][: len(head)]
                    final = z(lg) + w * z(np.array([h.score for h in head])) if w else lg
                    order = np.argsort(-final, kind="stable")
                    runs[q] = [head[i] for i in order] + tail
                key = f"{fname} + rerank window={window} w={w}"
                out[key] = score(runs, qrels)
                print(split, key, out[key], flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": saved}, indent=1))


if __name__ == "__main__":
    main()
