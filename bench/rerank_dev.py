"""Choose the reranking stage of ``router+hybrid+rerank`` on held-out SciFact *train* claims.

The product's candidates (router dense + bm25s, fused by the configured RRF: `build_retriever`'s own
stages) are computed once per query, and every candidate's features are cached:

  rrf      the fused first-stage score (what ``reranker.first_stage_weight`` multiplies)
  dense    the router's dense score, bm25 the bm25s score, as ``reranker.stage_weights`` sees them
           (`stage_features`: the window's lowest where that stage did not return the passage)
  expert   exact cosine of the routed query vector to the passage vector (dense without the floor)
  base     cosine of the base query vector to the passage vector
  x:NAME   cosine of expert NAME's query vector to the passage vector, for every packaged expert
           (whichever one the router picked)
  rr:NAME  the logit of each reranker given with --reranker NAME=DIR

A setting is a window W (candidates re-scored) and weights; the final score of a candidate in the
window is ``sum_f w_f * z_f`` (z-scores over the window), the rest follow in fused order, and a
document is scored at its best passage (eval.beir). Weights are searched on the dev claims (the
first 100 sorted train ids, which no reranker and no expert trains on); with --report-test the
best dev settings are then scored once on SciFact test.

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
FIRST_STAGE = ("rrf", "dense", "bm25", "expert", "base")


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
    dense_batch, details = retriever.dense.search_batch_with_details(texts, n)  # type: ignore[union-attr]
    sparse_batch = retriever.sparse.search_batch(texts, n)  # type: ignore[union-attr]
    router = retriever.dense.encoder  # type: ignore[union-attr]
    routed = router.encode_queries(texts).vectors
    base = router.encode_base(texts)
    ds = retriever.dense.datastore  # type: ignore[union-attr]
    out: dict = {"qids": qids, "experts": [d.get("expert") for d in details], "rows": []}
    for i, (dh, sh) in enumerate(zip(dense_batch, sparse_batch, strict=True)):
        fused = retriever.fusion.fuse(dh, sh)[:window]
        ids = [h.passage.passage_id for h in fused]
        vecs = ds.vectors(ids)
        product = stage_features(fused, ["dense", "bm25"])
        out["rows"].append({
            "pids": ids,
            "papers": [h.passage.paper_id for h in fused],
            "texts": [pair_text(h) for h in fused],
            "rrf": [h.scores["fusion"] for h in fused],
            "expert": (vecs @ routed[i]).tolist(),
            "base": (vecs @ base[i]).tolist(),
            "dense": product["dense"].tolist(),
            "bm25": product["bm25"].tolist(),
        })
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def expert_cosines(split: str, texts: list[str], cand: dict) -> dict[str, np.ndarray]:
    """(queries, window) cosine of each packaged expert's query vector to each candidate, cached."""
    window = len(cand["rows"][0]["pids"])
    path = CACHE / f"{split}-w{window}-experts.npz"
    if path.is_file():
        return dict(np.load(path))
    from openscholar.components import open_datastore
    from openscholar.retrieval import build_query_encoder
    from openscholar.settings import load_settings

    settings = load_settings()
    router = build_query_encoder(settings, "router")
    ds = open_datastore(settings)
    vecs = np.stack([ds.vectors(row["pids"]) for row in cand["rows"]])  # (queries, window, dim)
    out = {}
    for name in router.expert_names:  # type: ignore[attr-defined]
        q = router.encode_with(name, texts)  # type: ignore[attr-defined]
        out[f"x:{name}"] = np.einsum("qwd,qd->qw", vecs, q)
    np.savez(path, **out)
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


def evaluate(features: dict[str, np.ndarray], weights: dict[str, float], window: int, papers, qrels, qids) -> float:
    score = sum(w * zscore(features[f][:, :window]) for f, w in weights.items() if w)
    if isinstance(score, int):  # all weights zero: the fused order
        order = np.tile(np.arange(window), (len(qids), 1))
    else:
        order = np.argsort(-score, axis=1, kind="stable")
    full = [list(p) for p in papers]
    return ndcg(np.concatenate([order, np.tile(np.arange(window, len(full[0])), (len(qids), 1))], axis=1), full, qrels, qids)


def coordinate_ascent(names: list[str], start: dict[str, float], objective, values=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0), passes: int = 3):
    """Greedy per-feature weight search (ties keep the current weight); returns (weights, objective)."""
    weights = {n: float(start.get(n, 0.0)) for n in names}
    best = objective(weights)
    for _ in range(passes):
        improved = False
        for n in names:
            for v in values:
                if v == weights[n]:
                    continue
                trial = {**weights, n: v}
                if not any(trial.values()):
                    continue
                val = objective(trial)
                if val > best + 1e-9:
                    best, weights, improved = val, trial, True
        if not improved:
            break
    return weights, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reranker", action="append", default=[], help="NAME=DIR (repeatable).")
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
        feats |= {k: v.astype(np.float64) for k, v in expert_cosines(split, texts, cand).items()}
        for name, d in rerankers.items():
            feats[f"rr:{name}"] = reranker_logits(split, name, d, texts, cand, args.max_tokens).astype(np.float64)
        papers = [row["papers"] for row in cand["rows"]]
        data[split] = (qids, qrels, feats, papers)
    rr_names = [f"rr:{n}" for n in rerankers]
    grid_rr = [0.0, 0.5, 1.0] if len(rr_names) > 1 else [1.0]
    grid = {"rrf": [0.0, 0.5, 1.0, 1.5], "dense": [0.0, 0.5, 1.0], "bm25": [0.0, 0.25, 0.5], "base": [0.0, 0.5]}
    results = []
    qids, qrels, feats, papers = data["dev"]
    t0 = time.perf_counter()
    for window in windows:
        for rr_w in itertools.product(grid_rr, repeat=len(rr_names)):
            if rr_names and not any(rr_w):
                continue
            for fs in itertools.product(*grid.values()):
                weights = dict(zip(rr_names, rr_w, strict=True)) | dict(zip(grid, fs, strict=True))
                results.append((evaluate(feats, weights, window, papers, qrels, qids), window, weights))
    results.sort(key=lambda r: -r[0])
    print(f"dev grid: {len(results)} settings in {time.perf_counter() - t0:.0f} s", flush=True)
    current = {**dict.fromkeys(rr_names, 0.0), **dict.fromkeys(grid, 0.0), "rrf": 1.0}
    if rr_names:
        current[rr_names[0]] = 1.0
    rows = {"current (first reranker, w_rrf 1, window 20)": (20, current), "fused order (no reranking)": (20, dict.fromkeys(grid, 0.0))}
    for name in rr_names:
        rows[f"{name} alone, window 20"] = (20, {name: 1.0})
    for i, (_, window, weights) in enumerate(results[: args.top]):
        rows[f"grid #{i + 1}"] = (window, weights)
    # Coordinate ascent over every feature (RankLib's procedure), from the current setting.
    names = sorted(feats)
    sub = lambda idx: ([qids[i] for i in idx], {f: v[idx] for f, v in feats.items()}, [papers[i] for i in idx])
    every = np.arange(len(qids))
    ascended = []
    for window in windows:
        best, val = coordinate_ascent(names, current, lambda w, win=window: evaluate(feats, w, win, papers, qrels, qids))
        ascended.append((val, window, best))
    ascended.sort(key=lambda r: -r[0])
    rows["coordinate ascent (best window)"] = (ascended[0][1], ascended[0][2])
    # How well the ascent generalizes: 5-fold cross-validation over the dev claims.
    folds = np.array_split(np.random.default_rng(13).permutation(every), 5)
    cv_scores = []
    for k in range(5):
        train_idx = np.concatenate([f for j, f in enumerate(folds) if j != k])
        tq, tf, tp = sub(train_idx)
        hq, hf, hp = sub(folds[k])
        w, _ = coordinate_ascent(names, current, lambda w, tf=tf, tp=tp, tq=tq: evaluate(tf, w, ascended[0][1], tp, qrels, tq))
        cv_scores.append((evaluate(hf, w, ascended[0][1], hp, qrels, hq) * len(hq), evaluate(hf, current, 20, hp, qrels, hq) * len(hq)))
    cv = {"ascent": round(100 * sum(a for a, _ in cv_scores) / len(qids), 2), "current": round(100 * sum(b for _, b in cv_scores) / len(qids), 2)}
    print(f"dev 5-fold CV of the ascent (window {ascended[0][1]}): {cv}", flush=True)
    report = []
    for label, (window, weights) in rows.items():
        entry = {"row": label, "window": window, "weights": {k: v for k, v in weights.items() if v}}
        for split, (q, rel, f, p) in data.items():
            entry[split] = round(100 * evaluate(f, weights, window, p, rel, q), 2)
        report.append(entry)
        print(json.dumps(entry), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": report, "dev_cv": cv}, indent=1))


if __name__ == "__main__":
    main()
