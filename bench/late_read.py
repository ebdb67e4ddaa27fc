"""Reading passages late vs reading every candidate: hybrid and dense pipelines, same process, one core.

    nice -n 5 .venv/bin/python bench/late_read.py DATASTORE [--queries 200]

On an imported (scale_sim) datastore, per query and interleaved (so the page cache and the JIT
treat both alike): the product's `Retriever.retrieve` (first stages return ids, fusion on ids,
passages read only for the hits returned) and the earlier pipeline (each first stage reads its 100
candidates' passages, fusion on hits, then the per-paper cap), which it must equal hit for hit.
Queries as in bench/scale_sim.py (a 12-word window and a noisy copy of a stored passage's vector;
seed 2, so not scale_sim's queries). Writes bench/results/late_read_<N>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datastore", type=Path)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    import faiss
    from scale_sim import PrecomputedQueries, _percentiles, load

    from datastore.datastore import Datastore
    from openscholar.settings import load_settings
    from retriever.dense import DenseRetriever
    from retriever.facade import Retriever, cap_per_paper
    from retriever.sparse import open_sparse

    faiss.omp_set_num_threads(1)
    settings = load_settings()
    ds = Datastore.open(args.datastore, config=settings.datastore)
    sparse = open_sparse(ds, settings.retrieval.sparse, build=False)
    rng = np.random.default_rng(2)
    picks = [int(i) for i in rng.choice(ds.next_id, size=args.queries * 2, replace=False)]
    passages = ds.get(picks)[: args.queries]
    vecs = ds.vectors([p.passage_id for p in passages])
    qvecs = (vecs + rng.standard_normal(vecs.shape).astype(np.float32) * (0.45 / np.sqrt(ds.dim))).astype(np.float32)
    texts = []
    for p in passages:
        words = p.text.split()
        a = int(rng.integers(0, max(1, len(words) - 12)))
        texts.append(" ".join(words[a : a + 12]) + f" ~{len(texts)}")
    enc = PrecomputedQueries(ds.encoder_id, ds.dim, dict(zip(texts, qvecs, strict=True)))
    cfg = settings.retrieval
    dense = DenseRetriever(ds, enc)
    pipelines = {"hybrid": Retriever(cfg, dense=dense, sparse=sparse), "dense": Retriever(cfg, dense=dense)}
    n = max(cfg.candidates, 10)

    def eager(name: str, text: str) -> list:
        hits = dense.search(text, n)
        if name == "hybrid":
            hits = pipelines[name].fusion.fuse(hits, sparse.search(text, n))
        return cap_per_paper(hits, cfg.max_per_paper)[:10]

    ms: dict[str, list[float]] = {f"{p}_{w}": [] for p in pipelines for w in ("late", "eager")}
    same = 0
    for i, text in enumerate(texts):
        for name, retriever in pipelines.items():
            order = ("late", "eager") if i % 2 else ("eager", "late")
            got = {}
            for way in order:
                t = time.perf_counter()
                got[way] = retriever.retrieve(text, 10).hits if way == "late" else eager(name, text)
                ms[f"{name}_{way}"].append((time.perf_counter() - t) * 1000)
            same += [h.passage.passage_id for h in got["late"]] == [h.passage.passage_id for h in got["eager"]]
    out = {
        "datastore": str(args.datastore), "live_passages": len(ds), "queries": len(texts),
        "candidates": cfg.candidates, **{k: _percentiles(v) for k, v in ms.items()},
        "hybrid_p50_ratio_late_to_eager": round(float(np.median(ms["hybrid_late"]) / np.median(ms["hybrid_eager"])), 3),
        "dense_p50_ratio_late_to_eager": round(float(np.median(ms["dense_late"]) / np.median(ms["dense_eager"])), 3),
        "identical_rankings": f"{same}/{2 * len(texts)}", "load": load(),
    }
    path = REPO / "bench" / "results" / f"late_read_{len(ds)}.json"
    path.write_text(json.dumps(out, indent=2))
    for k in ms:
        print(f"{k:14s} p50 {out[k]['p50_ms']:8.2f}  p99 {out[k]['p99_ms']:8.2f} ms")
    print(f"late/eager p50: hybrid {out['hybrid_p50_ratio_late_to_eager']}, dense {out['dense_p50_ratio_late_to_eager']}; "
          f"identical rankings {out['identical_rankings']}; load {out['load']}; wrote {path}")


if __name__ == "__main__":
    main()
