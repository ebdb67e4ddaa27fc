"""Choose the reranking stage of ``router+hybrid+rerank`` on held-out SciFact *train* claims.

The product's candidates (router dense + bm25s, fused by the configured RRF: `build_retriever`'s own
stages) are computed once per query, and every candidate's features are cached:

  rrf      the fused first-stage score (what ``reranker.first_stage_weight`` multiplies)
  dense    the router's dense score, bm25 the bm25s score, as ``reranker.stage_weights`` sees them
           (`stage_features`: the window's lowest where that stage did not return the passage)
  rr:NAME  the logit of each reranker given with --reranker NAME=DIR

A setting is a window W (candidates re-scored), an ensemble (a subset of the rerankers) and
first-stage weights, exactly what `retrieval.reranker` expresses (`candidates`, `model` +
`extra_models`, `first_stage_weight` = the rrf weight, `stage_weights`); the final score of a
candidate in the window is ``z(sum_m z(logit_m)) + sum_f w_f * z_f`` (z-scores over the window), the
rest follow in fused order, and a document is scored at its best passage (eval.beir). Settings
are searched on the dev claims (the first 100 sorted train ids, which no reranker and no expert
trains on); with --report-test the best dev settings are then scored once on SciFact test.

Run: nice -n 10 .venv/bin/python bench/rerank_dev.py --reranker v5=retriever/models/reranker [--reranker v6=DIR] [--report-test]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eval.beir import load_qrels, load_queries, ndcg_at
from retriever.reranker import CrossEncoderReranker, pair_text, stage_features
from retriever.train_reranker import held_out_queries

SCIFACT = REPO.parent / "shared" / "data" / "beir" / "scifact"
CACHE = REPO / ".cache" / "rerank_dev"
RESULTS = REPO / "bench" / "results"
FIRST_STAGE = ("rrf", "dense", "bm25")


def candidates(split: str, qids: list[str], texts: list[str], window: int) -> dict:
    """The product's fused candidates (top ``window``) and their first-stage features, cached."""
    path = CACHE / f"{split}-w{window}.json"
    if path.is_file():
        return json.loads(path.read_text())
    from openscholar.retrieval import build_retriever
    from openscholar.settings import load_settings

    settings = load_settings()
    retriever = build_retriever(settings, pipeline="router+hybrid")
    n = settings.retrieval.candidates
    dense_batch = retriever.dense.search_batch(texts, n)  # type: ignore[union-attr]
    sparse_batch = retriever.sparse.search_batch(texts, n)  # type: ignore[union-attr]
    out: dict = {"qids": qids, "rows": []}
    for i, (dh, sh) in enumerate(zip(dense_batch, sparse_batch, strict=True)):
        fused = retriever.fusion.fuse(dh, sh)[:window]
        product = stage_features(fused, ["dense", "bm25"])
        out["rows"].append({
            "pids": [h.passage.passage_id for h in fused],
            "papers": [h.passage.paper_id for h in fused],
            "texts": [pair_text(h) for h in fused],
            "rrf": [h.scores["fusion"] for h in fused],
            "dense": product["dense"].tolist(),
            "bm25": product["bm25"].tolist(),
        })
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def reranker_logits(split: str, name: str, directory: str, queries: list[str], cand: dict, max_tokens: int) -> np.ndarray:
    """(queries, window) logits of one reranker, cached by the adapter's bytes and the token budget."""
    digest = hashlib.sha256()
    for f in sorted(Path(directory).glob("*.safetensors")):
        digest.update(f.read_bytes())
    window = len(cand["rows"][0]["pids"])
    path = CACHE / f"{split}-w{window}-{name}-{digest.hexdigest()[:12]}-t{max_tokens}.npy"
    if path.is_file():
        return np.load(path)
    from retriever.config import RerankerConfig

    rr = CrossEncoderReranker(RerankerConfig(max_tokens=max_tokens), directory)
    t0 = time.perf_counter()
    logits = np.stack([rr.score(q, row["texts"]) for q, row in zip(queries, cand["rows"], strict=True)])
    print(f"{split} {name}: {time.perf_counter() - t0:.0f} s for {len(queries)} queries", flush=True)
    np.save(path, logits)
    return logits


def zscore(x: np.ndarray) -> np.ndarray:
    """z over the last axis (the window)."""
    sd = x.std(axis=-1, keepdims=True)
    return np.where(sd > 1e-9, (x - x.mean(axis=-1, keepdims=True)) / np.maximum(sd, 1e-9), 0.0)


def ndcg(order: np.ndarray, papers: list[list[str]], qrels: dict, qids: list[str]) -> float:
    """Mean nDCG@10 with the window re-ordered by ``order`` (queries, W) and nothing after it:
    the window holds >= 10 documents for every query here (checked by the caller)."""
    vals = []
    for q, row, o in zip(qids, papers, order, strict=True):
        seen: dict[str, None] = {}
        for j in o:
            seen.setdefault(row[j], None)
        vals.append(ndcg_at(list(seen), qrels[q], 10))
    return float(np.mean(vals))


def evaluate(feats: dict[str, np.ndarray], setting: dict, papers: list[list[str]], qrels: dict, qids: list[str]) -> float:
    """nDCG@10 of one setting, scored the way `CrossEncoderReranker.rerank` scores: the ensemble's score
    (sum of its members' z-scored logits) z-scored, plus each first-stage weight times its z-score,
    over the first ``window`` candidates; the rest follow in fused order."""
    window = setting["window"]
    score = np.zeros((len(qids), window))
    if setting["rerankers"]:
        ensemble = sum(zscore(feats[f"rr:{m}"][:, :window]) for m in setting["rerankers"])
        score = score + zscore(ensemble)
    for f, w in setting["weights"].items():
        if w:
            score = score + w * zscore(feats[f][:, :window])
    order = np.argsort(-score, axis=1, kind="stable")
    tail = np.tile(np.arange(window, len(papers[0])), (len(qids), 1))
    return ndcg(np.concatenate([order, tail], axis=1), papers, qrels, qids)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reranker", action="append", default=[], help="NAME=DIR (repeatable); every non-empty subset is tried as an ensemble.")
    ap.add_argument("--window", type=int, default=40, help="Candidates cached per query (the largest window).")
    ap.add_argument("--windows", default="20,30,40")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--report-test", action="store_true")
    ap.add_argument("--top", type=int, default=10, help="Dev settings printed (and scored on test).")
    ap.add_argument("--out", type=Path, default=RESULTS / "rerank_dev.json")
    args = ap.parse_args()
    rerankers = dict(r.split("=", 1) for r in args.reranker)
    windows = [int(w) for w in args.windows.split(",")]
    queries = load_queries(SCIFACT / "queries.jsonl")
    train = load_qrels(SCIFACT / "qrels" / "train.tsv")
    splits = {"dev": {q: train[q] for q in held_out_queries(list(train), 100)}}
    if args.report_test:
        splits["test"] = load_qrels(SCIFACT / "qrels" / "test.tsv")
    data = {}
    for split, qrels in splits.items():
        qids = sorted(qrels)
        texts = [queries[q] for q in qids]
        cand = candidates(split, qids, texts, args.window)
        feats = {f: np.array([row[f] for row in cand["rows"]], dtype=np.float64) for f in FIRST_STAGE}
        for name, d in rerankers.items():
            feats[f"rr:{name}"] = reranker_logits(split, name, d, texts, cand, args.max_tokens).astype(np.float64)
        data[split] = (qids, qrels, feats, [row["papers"] for row in cand["rows"]])
    names = list(rerankers)
    ensembles = [list(c) for n in range(1, len(names) + 1) for c in itertools.combinations(names, n)]
    grid = {"rrf": [0.0, 0.5, 1.0, 1.5], "dense": [0.0, 0.5, 1.0], "bm25": [0.0, 0.25, 0.5, 1.0]}
    qids, qrels, feats, papers = data["dev"]
    t0 = time.perf_counter()
    results = []
    for window, members, ws in itertools.product(windows, ensembles, itertools.product(*grid.values())):
        setting = {"window": window, "rerankers": members, "weights": dict(zip(grid, ws, strict=True))}
        results.append((evaluate(feats, setting, papers, qrels, qids), setting))
    results.sort(key=lambda r: -r[0])
    print(f"dev grid: {len(results)} settings in {time.perf_counter() - t0:.0f} s", flush=True)
    rows: dict[str, dict] = {"fused order (no reranking)": {"window": 20, "rerankers": [], "weights": {}}}
    for members in ensembles:
        label = "+".join(members)
        rows[f"{label} alone, window 20"] = {"window": 20, "rerankers": members, "weights": {}}
        rows[f"{label}, w_rrf 1, window 20 (the shipped combination)"] = {"window": 20, "rerankers": members, "weights": {"rrf": 1.0}}
        best = next(s for _, s in results if s["rerankers"] == members)
        rows[f"{label}: best on dev"] = best
    for i, (_, setting) in enumerate(results[: args.top]):
        rows[f"dev #{i + 1}"] = setting
    report = []
    for label, setting in rows.items():
        entry = {"row": label, **setting, "weights": {k: v for k, v in setting["weights"].items() if v}}
        for split, (q, rel, f, p) in data.items():
            entry[split] = round(100 * evaluate(f, setting, p, rel, q), 2)
        report.append(entry)
        print(json.dumps(entry), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": report}, indent=1))


if __name__ == "__main__":
    main()
