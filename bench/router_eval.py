"""RouterRetriever on SciFact test, in ONE run: every baseline and oracle of the paper's table.

    nice -n 10 .venv/bin/python bench/router_eval.py [--hybrid-rerank] [--out bench/results/router_eval.json]

Rows (nDCG@10 / recall@100; a document is scored by its best passage, eval.beir's metrics):
  base          the frozen base encoder alone (the `dense` pipeline)
  <expert>      every query encoded by that one expert
  multitask     one adapter trained on the union of the domains (downsampled), same recipe
  DatasetOracle the expert trained on this dataset's training split (bio-claims for SciFact)
  InstanceOracle per query, the expert that scores best on it (uses test qrels: an upper bound)
  DatasetRouter one expert for the whole dataset: the argmax of the mean routing similarities
  router-uniform / router-count  per-query top-1 expert by pilot similarity (the paper's mean; count-weighted)
  router        the `router` pipeline as configured (router.routing: the routing head by default)
Latency: p50 of single-query encode calls, base vs router (interleaved, after warm-up).
Test qrels are used only to score, never to train or to build pilots.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eval.beir import load_qrels, load_queries, ndcg_at, recall_at  # noqa: E402

SCIFACT = REPO.parent / "shared" / "data" / "beir" / "scifact"
DATASET_EXPERT = "bio-claims"  # trained on SciFact train claims: the DatasetOracle for SciFact


def doc_runs(ds, vectors: np.ndarray, k: int = 100) -> list[list[str]]:  # noqa: ANN001
    """Document rankings: passages searched, each paper ranked at its best passage."""
    _, ids = ds.search(vectors, k)
    flat = sorted({int(i) for row in ids for i in row if i >= 0})
    paper = {p.passage_id: p.paper_id for p in ds.get(flat)}
    runs = []
    for row in ids:
        seen: dict[str, None] = {}
        for i in row:
            if int(i) in paper:
                seen.setdefault(paper[int(i)], None)
        runs.append(list(seen))
    return runs


def score(runs: list[list[str]], qids: list[str], qrels) -> tuple[dict[str, float], np.ndarray]:  # noqa: ANN001
    nd = np.array([ndcg_at(r, qrels[q], 10) for r, q in zip(runs, qids, strict=True)])
    rc = np.array([recall_at(r, qrels[q], 100) for r, q in zip(runs, qids, strict=True)])
    return {"ndcg@10": float(nd.mean()), "recall@100": float(rc.mean())}, nd


def p50_latency(fn, texts: list[str], repeats: int = 1) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        for t in texts:
            t0 = time.perf_counter()
            fn([t])
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scifact", type=Path, default=SCIFACT)
    ap.add_argument("--experts-dir", type=Path, default=None, help="Default: router.experts_dir from settings.")
    ap.add_argument("--multitask", type=Path, default=REPO / ".cache" / "openscholar" / "router_baselines" / "multitask")
    ap.add_argument("--latency-queries", type=int, default=100)
    ap.add_argument("--hybrid-rerank", action="store_true", help="Also run router+hybrid+rerank (and hybrid+rerank).")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "router_eval.json")
    args = ap.parse_args()

    from openscholar.components import build_embedder, open_datastore
    from openscholar.settings import load_settings
    from router.config import resolve_experts_dir
    from router.experts import ExpertStore
    from router.factory import build_router_encoder

    s = load_settings()
    if args.experts_dir is not None:
        s.router.experts_dir = args.experts_dir
    ds = open_datastore(s)
    embedder = build_embedder(s).warm_up()
    router = build_router_encoder(s.router, s.embedder, s.cache_path, embedder=embedder).warm_up()
    queries = load_queries(args.scifact / "queries.jsonl")
    qrels = load_qrels(args.scifact / "qrels" / "test.tsv")
    qids = [q for q in qrels if any(r > 0 for r in qrels[q].values())]
    texts = [queries[q] for q in qids]
    rows: dict[str, dict] = {}
    per_query: dict[str, np.ndarray] = {}

    def add(name: str, vectors: np.ndarray, note: str = "") -> None:
        metrics, nd = score(doc_runs(ds, vectors), qids, qrels)
        rows[name] = {**metrics, "note": note}
        per_query[name] = nd
        print(f"{name:<16} nDCG@10 {metrics['ndcg@10'] * 100:6.2f}  R@100 {metrics['recall@100'] * 100:6.2f}  {note}", flush=True)

    add("base", embedder.encode_queries(texts).vectors, "frozen base (dense pipeline)")
    names = router.expert_names
    for n in names:
        add(n, router.encode_with(n, texts), "single expert")
    if (args.multitask / "adapter").is_dir():
        mt = router.backbone.merged_expert(args.multitask / "adapter")
        add("multitask", router.backbone.encode_with(mt, texts), "one adapter on the union (downsampled)")
    if DATASET_EXPERT in names:
        rows["DatasetOracle"] = {**rows[DATASET_EXPERT], "note": f"= {DATASET_EXPERT} (trained on SciFact train)"}
        per_query["DatasetOracle"] = per_query[DATASET_EXPERT]
    stacked = np.stack([per_query[n] for n in names], axis=1)
    best = stacked.argmax(axis=1)
    inst_vecs = np.zeros((len(texts), router.dim), np.float32)
    for j, n in enumerate(names):
        rows_j = np.flatnonzero(best == j)
        if len(rows_j):
            inst_vecs[rows_j] = router.encode_with(n, [texts[i] for i in rows_j])
    add("InstanceOracle", inst_vecs, "per-query best expert (test qrels: upper bound)")
    _, sims, _ = router.route(texts)
    ds_choice = names[int(sims.mean(axis=0).argmax())]
    add("DatasetRouter", router.encode_with(ds_choice, texts), f"one expert for all: {ds_choice}")
    from router.encoder import RouterQueryEncoder

    paper = RouterQueryEncoder(router.backbone, router.experts_dir, bf16=router._bf16, weighting="uniform")
    qv_paper = paper.encode_queries(texts)
    picks_paper = Counter(r.expert for r in qv_paper.routing)
    add("router-uniform", qv_paper.vectors, "paper's plain mean over pilots: " + ", ".join(f"{k} {v}" for k, v in picks_paper.most_common()))
    count = RouterQueryEncoder(router.backbone, router.experts_dir, bf16=router._bf16, weighting="count")
    qv_count = count.encode_queries(texts)
    picks_count = Counter(r.expert for r in qv_count.routing)
    add("router-count", qv_count.vectors, "count-weighted pilots: " + ", ".join(f"{k} {v}" for k, v in picks_count.most_common()))
    qv = router.encode_queries(texts)
    picks = Counter(r.expert for r in qv.routing)
    rule = "routing head" if router.rule == "head" else f"{router.weighting}-weighted pilots"
    add("router", qv.vectors, f"{rule}: " + ", ".join(f"{k} {v}" for k, v in picks.most_common()))

    # Latency: single-query encode calls, interleaved base/router, after warm-up.
    lat_texts = texts[: args.latency_queries]
    p50_latency(embedder.encode_queries, lat_texts[:10])
    p50_latency(router.encode_queries, lat_texts[:10])
    base_ms, router_ms = [], []
    for _ in range(2):
        base_ms.append(p50_latency(embedder.encode_queries, lat_texts))
        router_ms.append(p50_latency(router.encode_queries, lat_texts))
    latency = {"base_p50_ms": min(base_ms), "router_p50_ms": min(router_ms)}
    latency["ratio"] = latency["router_p50_ms"] / latency["base_p50_ms"]
    print(f"latency p50: base {latency['base_p50_ms']:.2f} ms, router {latency['router_p50_ms']:.2f} ms, ratio {latency['ratio']:.2f}", flush=True)

    if args.hybrid_rerank:
        from openscholar.retrieval import build_retriever

        for pipeline in ("hybrid", "router+hybrid", "hybrid+rerank", "router+hybrid+rerank"):
            retr = build_retriever(s, ds, pipeline, embedder)
            runs = []
            for t in texts:
                seen: dict[str, None] = {}
                for h in retr.search(t, 100):
                    seen.setdefault(h.passage.paper_id, None)
                runs.append(list(seen))
            metrics, nd = score(runs, qids, qrels)
            rows[pipeline] = {**metrics, "note": "full pipeline"}
            print(f"{pipeline:<16} nDCG@10 {metrics['ndcg@10'] * 100:6.2f}  R@100 {metrics['recall@100'] * 100:6.2f}", flush=True)

    experts = {e.name: e.manifest.model_dump() for e in ExpertStore(resolve_experts_dir(s.router, s.cache_path)).experts()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "latency": latency, "routing": dict(picks),
                                    "queries": len(qids), "experts": experts}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
