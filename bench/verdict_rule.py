"""How a claim verdict reads its passages, chosen on SciFact train claims held apart from the
judge (the judge's dev fold), never on the ScholarQABench 208 (zero claim / doc overlap).

Each held-apart claim is read against its gold abstract(s) as `openscholar.verdict` reads evidence.
Every window of every abstract is read once (the trained judge's probabilities, the bi-encoder
vectors) and cached; each setting is then computed from that cache exactly as the judge computes it
(checked against `StackedJudge.judge` and `verdict.decide_on_passages`):

- aggregation ``passage``: the stacked judge over the whole abstract reading its ``k`` windows
  closest by content words (its features take the best window: the previous verdict, k = 8);
  ``window``: each of the ``k`` closest windows judged as a passage of its own, the best counting
  (``evidence.verdict_windows`` = k);
- k = 8, 4, 3, 2, 1 (``window`` also: all);
- rule: "lean" (supports >= contradicts decides, no parameter), and ``supports - contradicts >=
  margin`` with the margin chosen by leave-one-cluster-out cross-validation (out-of-fold accuracy).

    nice -n 10 .venv/bin/python bench/verdict_rule.py            # writes bench/results/verdict_rule.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "bench" / "results" / "verdict_rule.json"
WINDOWS = (8, 4, 3, 2, 1)
MARGINS = tuple(round(x, 3) for x in np.arange(-0.5, 0.501, 0.025))


def held_apart_claims() -> list[dict[str, Any]]:
    """SciFact train claims of the judge's dev fold with their gold abstracts and true/false label
    (claims whose abstracts disagree are left out). Same selection as bench/faithfulness.py's
    abstract verdicts."""
    # bench/ is on sys.path when run as a script
    from faithfulness import SCIFACT, SQA, dev_fold_claims

    from openscholar.judges.support_data import build_judge_pairs

    used_ids = build_judge_pairs(SCIFACT, SQA)["report"]["scifact"]["used_claim_ids"]
    corpus, dev = dev_fold_claims(used_ids)
    out = []
    for q, cluster in dev:
        meta = q.get("metadata") or {}
        labels = {ev[0]["label"] for ev in meta.values()}
        if len(labels) != 1:
            continue
        out.append({"id": q["_id"], "cluster": cluster, "claim": q["text"],
                    "gold": "true" if labels == {"SUPPORT"} else "false",
                    "passages": [f"{corpus[d]['title']}\n{corpus[d]['text']}" for d in sorted(meta)]})
    return out


def read_cache(judge: Any, claims: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    """Every window of every (claim, abstract): trained-judge probabilities and unit vectors."""
    if path.is_file():
        return pickle.loads(path.read_bytes())
    from openscholar.judges.stack_features import body_of

    reader = judge.reader
    full = reader.trained.with_windows(None)
    pairs = [(c["claim"], p) for c in claims for p in c["passages"]]
    windows = [full.windows_of(s, p) for s, p in pairs]
    flat = [(s, w) for (s, _), ws in zip(pairs, windows, strict=True) for w in ws]
    t0 = time.perf_counter()
    probs = full.probabilities(flat)
    texts = list(dict.fromkeys([s for s, _ in pairs] + [body_of(p) for _, p in pairs] + [w for ws in windows for w in ws]))
    vecs = np.asarray(reader._embedder.embed(texts), dtype=np.float64)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    cache = {"pairs": pairs, "windows": windows, "probs": probs, "row": {t: i for i, t in enumerate(texts)},
             "vecs": vecs, "seconds": round(time.perf_counter() - t0, 1), "window_pairs": len(flat)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(cache))
    return cache


def judgements(judge: Any, cache: dict[str, Any], k: int | None, aggregation: str) -> list[Any]:
    """The judgement of each cached (claim, abstract) pair reading its ``k`` closest windows: the
    stacked judge over the abstract (``passage``), or the best over the windows judged one by one
    (``window``)."""
    from openscholar.judges.lexical import content_words
    from openscholar.judges.protocol import Judgement
    from openscholar.judges.stack_features import body_of, pair_features

    row, vecs = cache["row"], cache["vecs"]
    pairs, lists, probs, wvecs, svecs, bvecs, owner, start = [], [], [], [], [], [], [], 0
    for n, ((s, p), ws) in enumerate(zip(cache["pairs"], cache["windows"], strict=True)):
        pr = cache["probs"][start:start + len(ws)]
        start += len(ws)
        keep = list(range(len(ws)))
        if k is not None and len(ws) > k:
            words = content_words(s)
            ranked = sorted(keep, key=lambda i: (-len(words & content_words(ws[i])), i))
            keep = sorted(ranked[:k])
        if aggregation == "passage":
            pairs.append((s, p))
            lists.append([ws[i] for i in keep])
            probs.append([pr[i] for i in keep])
            wvecs.append(vecs[[row[ws[i]] for i in keep]])
            svecs.append(row[s])
            bvecs.append(row[body_of(p)])
            owner.append(n)
        else:
            for i in keep:
                pairs.append((s, ws[i]))
                lists.append([ws[i]])
                probs.append([pr[i]])
                wvecs.append(vecs[[row[ws[i]]]])
                svecs.append(row[s])
                bvecs.append(row[ws[i]])
                owner.append(n)
    x = pair_features(pairs, lists, probs, vecs[svecs], vecs[bvecs], wvecs, judge.reader.idf, judge.reader.default_idf)
    best = [[0.0, 0.0, 1.0] for _ in cache["pairs"]]
    for n, j in zip(owner, judge.judge_features(x), strict=True):
        b = best[n]
        b[0], b[1], b[2] = max(b[0], j.supports), max(b[1], j.contradicts), min(b[2], j.neither)
    return [Judgement(supports=a, contradicts=b, neither=c) for a, b, c in best]


def claim_scores(claims: list[dict[str, Any]], js: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per claim: the best supports and contradicts over its abstracts (`verdict.decide_on_passages`)."""
    s, c, i = [], [], 0
    for cl in claims:
        part = js[i:i + len(cl["passages"])]
        i += len(cl["passages"])
        s.append(max(j.supports for j in part))
        c.append(max(j.contradicts for j in part))
    return np.asarray(s), np.asarray(c)


def margin_cv(d: np.ndarray, gold: np.ndarray, groups: list[str]) -> dict[str, Any]:
    """Leave-one-cluster-out: the margin best on the other clusters, applied to the left-out one.
    Ties between margins go to the one closest to 0 (the lean rule)."""
    def best(mask: np.ndarray) -> float:
        return max((float(np.mean((d[mask] >= m) == gold[mask])), -abs(m), m) for m in MARGINS)[2]

    g = np.asarray(groups)
    correct = np.zeros(len(d), dtype=bool)
    chosen = []
    for cl in sorted(set(groups)):
        out = g == cl
        m = best(~out)
        chosen.append(m)
        correct[out] = (d[out] >= m) == gold[out]
    m_all = best(np.ones(len(d), dtype=bool))
    return {"margin": m_all, "cv_accuracy": round(float(correct.mean()), 4),
            "fold_margins": {"min": min(chosen), "median": float(np.median(chosen)), "max": max(chosen)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/verdict_rule_cache.pkl"))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from openscholar.answer import Reference
    from openscholar.judges.stacked import StackedJudge
    from openscholar.verdict import decide_on_passages

    load0 = os.getloadavg()
    judge = StackedJudge(windows_per_passage=8).warm_up()
    claims = held_apart_claims()
    cache = read_cache(judge, claims, args.cache)
    gold = np.asarray([c["gold"] == "true" for c in claims])
    groups = [c["cluster"] for c in claims]
    # The cache reproduces the product: the judge over whole abstracts, and a verdict reading 3 windows.
    direct = judge.judge(cache["pairs"][:6]) + [
        decide_on_passages(c["claim"], [Reference(id=0, title=p.split("\n", 1)[0], text=p.split("\n", 1)[1])], judge,
                           windows=3) for c in claims[:4] for p in c["passages"][:1]]
    cached = judgements(judge, cache, 8, "passage")[:6] + [
        judgements(judge, cache, 3, "window")[cache["pairs"].index((c["claim"], c["passages"][0]))] for c in claims[:4]]
    drift = max(abs(a.supports - b.supports) + abs(a.contradicts - b.contradicts) for a, b in zip(direct, cached, strict=True))
    assert drift < 2e-3, f"the cache does not reproduce the judge (drift {drift})"
    rows: dict[str, Any] = {}
    for aggregation, ks in (("passage", WINDOWS), ("window", (None, *WINDOWS))):
        for k in ks:
            s, c = claim_scores(claims, judgements(judge, cache, k, aggregation))
            lean = float(np.mean((s >= c) == gold))
            supported, contradicted = (s >= 0.5) & (c < 0.5), (c >= 0.5) & (s < 0.5)
            strict = float(np.mean(np.where(gold, supported, contradicted)))
            key = f"{aggregation}:{k or 'all'}"
            rows[key] = {"lean": round(lean, 4), "strict": round(strict, 4),
                         # verdicts a user reads as settled that are wrong, and "not enough evidence" (mixed or weak)
                         "wrong_settled": int(np.sum(supported & ~gold) + np.sum(contradicted & gold)),
                         "not_enough_evidence": int(np.sum(~supported & ~contradicted)),
                         "margin_rule": margin_cv(s - c, gold, groups)}
            print(f"{key}: {json.dumps(rows[key])}", flush=True)
    result = {"claims": len(claims), "clusters": len(set(groups)), "abstract_pairs": len(cache["pairs"]),
              "window_pairs": cache["window_pairs"], "true_share": round(float(gold.mean()), 4),
              "majority": round(float(max(gold.mean(), 1 - gold.mean())), 4), "rows": rows,
              "previous": "passage:8 lean", "chosen": "window:2 lean (evidence.verdict_windows = 2)",
              "cache_check_drift": round(drift, 6), "load_avg": {"start": load0, "end": os.getloadavg()},
              "data": "SciFact train claims of the judge's held-apart dev fold (split by claim cluster), gold abstracts; "
                      "zero claim-text / doc-id overlap with the ScholarQABench 208"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
