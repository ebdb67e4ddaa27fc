"""BEIR retrieval evaluation: nDCG@10, recall@100, MRR@10 and query latency of a retrieval pipeline.

The datastore splits a BEIR document into passages; a document is scored by its best passage (its
first occurrence in the passage ranking), which is also what BEIR's own MaxP evaluations do. The
metric definitions are trec_eval's (``ndcg_cut_10``, ``recall_100``; gains are the graded qrels,
log2 discount) and BEIR's MRR@10; tests check them against pytrec_eval and ranx.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retriever.protocols import Hit

Qrels = dict[str, dict[str, int]]
Run = dict[str, list[str]]  # query id -> document ids, best first


# -- files ------------------------------------------------------------------------------------------
def load_queries(path: str | Path) -> dict[str, str]:
    """BEIR ``queries.jsonl``: ``{"_id": ..., "text": ...}`` per line."""
    queries: dict[str, str] = {}
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                queries[str(rec["_id"])] = str(rec["text"])
    return queries


def load_qrels(path: str | Path) -> Qrels:
    """BEIR qrels TSV (``query-id corpus-id score`` with a header line)."""
    qrels: Qrels = {}
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or (n == 0 and not parts[2].lstrip("-").isdigit()):
                continue
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


# -- passages -> documents --------------------------------------------------------------------------
def documents_of(hits: Iterable[Hit]) -> list[str]:
    """Paper ids in order of their best passage (a document is scored by its best passage)."""
    seen: dict[str, None] = {}
    for hit in hits:
        seen.setdefault(hit.passage.paper_id, None)
    return list(seen)


# -- metrics ----------------------------------------------------------------------------------------
def ndcg_at(ranking: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    """trec_eval's ndcg_cut: gain = graded relevance, discount 1/log2(rank + 1), ideal from the qrels."""
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]) if rels.get(d, 0) > 0)
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranking: Sequence[str], rels: Mapping[str, int], k: int = 100) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    return len(relevant.intersection(ranking[:k])) / len(relevant) if relevant else 0.0


def mrr_at(ranking: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranking[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


METRICS: dict[str, Callable[[Sequence[str], Mapping[str, int]], float]] = {
    "ndcg@10": lambda r, q: ndcg_at(r, q, 10),
    "recall@100": lambda r, q: recall_at(r, q, 100),
    "mrr@10": lambda r, q: mrr_at(r, q, 10),
}


def evaluate_run(run: Run, qrels: Qrels) -> dict[str, Any]:
    """Mean of each metric over the queries of ``qrels`` that have a relevant document.

    A query missing from ``run`` counts as retrieving nothing (scores 0), as in trec_eval's -c mode.
    """
    judged = [q for q, rels in qrels.items() if any(r > 0 for r in rels.values())]
    per_query = {q: {name: fn(run.get(q, []), qrels[q]) for name, fn in METRICS.items()} for q in judged}
    means = {name: (sum(m[name] for m in per_query.values()) / len(judged) if judged else 0.0) for name in METRICS}
    return {**means, "queries": len(judged), "per_query": per_query}


# -- running a pipeline -----------------------------------------------------------------------------
@dataclass
class BeirResult:
    metrics: dict[str, float]
    latencies_ms: list[float]
    run: Run
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            **{k: round(v, 5) for k, v in self.metrics.items()},
            "latency_p50_ms": round(statistics.median(lat), 2) if lat else 0.0,
            "latency_p95_ms": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 2) if lat else 0.0,
            "queries": len(self.per_query),
        }


def run_beir(
    search: Callable[[str, int], list[Hit]],
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    k: int = 100,
    progress: bool = False,
) -> BeirResult:
    """Run ``search(query, k)`` once per judged query (timed one by one) and score the documents."""
    from datastore.errors import ScholarError

    missing = [q for q in qrels if q not in queries]
    if missing:
        raise ScholarError(
            f"{len(missing)} judged queries are not in the queries file (e.g. {missing[:3]})",
            hint="pass the queries.jsonl that belongs to this qrels file",
        )
    ids = [q for q in qrels if any(r > 0 for r in qrels[q].values())]
    run: Run = {}
    latencies: list[float] = []
    iterator: Iterable[str] = ids
    if progress:
        from tqdm import tqdm

        iterator = tqdm(ids, desc="queries", unit="q")
    for qid in iterator:
        t0 = time.perf_counter()
        hits = search(queries[qid], k)
        latencies.append((time.perf_counter() - t0) * 1000)
        run[qid] = documents_of(hits)[:k]
    scored = evaluate_run(run, qrels)
    metrics = {name: scored[name] for name in METRICS}
    return BeirResult(metrics, latencies, run, scored["per_query"])
