"""Router latency ratio and the multitask row, without re-running every row of router_eval.py.

    nice -n 10 .venv/bin/python bench/router_latency.py   -> bench/results/router_extra.json

multitask: the adapter trained on the union of the domains (scripts/train_router_experts.py
--out .cache/openscholar/router_baselines multitask), SciFact test nDCG@10 / R@100. Latency: p50 of
single-query encode calls over 100 test claims, base vs router interleaved, best of 3, after warm-up.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from router_eval import SCIFACT, doc_runs, p50_latency, score

from eval.beir import load_qrels, load_queries
from openscholar.components import build_embedder, open_datastore
from openscholar.settings import load_settings
from router.factory import build_router_encoder

s = load_settings(); ds = open_datastore(s)
emb = build_embedder(s).warm_up()
router = build_router_encoder(s.router, s.embedder, s.cache_path, embedder=emb).warm_up()
queries = load_queries(SCIFACT / "queries.jsonl"); qrels = load_qrels(SCIFACT / "qrels" / "test.tsv")
qids = [q for q in qrels if any(r > 0 for r in qrels[q].values())]; texts = [queries[q] for q in qids]
mt = router.backbone.merged_expert(Path(".cache/openscholar/router_baselines/multitask/adapter"))
m, _ = score(doc_runs(ds, router.backbone.encode_with(mt, texts)), qids, qrels)
print("multitask", m, flush=True)
lat = texts[:100]
p50_latency(emb.encode_queries, lat[:10]); p50_latency(router.encode_queries, lat[:10])
b, r = [], []
for _ in range(3):
    b.append(p50_latency(emb.encode_queries, lat)); r.append(p50_latency(router.encode_queries, lat))
out = {"multitask": m, "base_p50_ms": min(b), "router_p50_ms": min(r), "ratio": min(r) / min(b), "runs": {"base": b, "router": r}}
print(out)
Path("bench/results/router_extra.json").write_text(json.dumps(out, indent=1) + "\n")
