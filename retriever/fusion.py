"""Hybrid fusion of ranked lists (dense, sparse, ...) over the same passage ids.

- Reciprocal-rank fusion (Cormack et al. 2009): ``score(p) = sum_r w_r / (k + rank_r(p))`` with
  1-based ranks; a passage missing from a ranking gets nothing from it.
- Normalized score interpolation: each ranking's scores are min-max normalized to [0, 1] over its
  list, then ``score(p) = sum_r w_r * norm_r(p)``; a passage missing from a ranking counts as 0 (the
  bottom of that list).
Every fused hit keeps the per-stage scores of its inputs and adds ``scores["fusion"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from retriever.config import FusionConfig
from retriever.protocols import Hit

STAGE = "fusion"


def _merge(rankings: Mapping[str, Sequence[Hit]]) -> tuple[dict[int, Hit], dict[int, int]]:
    """First hit object per passage id (carrying every stage's score) and its best rank anywhere."""
    merged: dict[int, Hit] = {}
    best_rank: dict[int, int] = {}
    for hits in rankings.values():
        for rank, hit in enumerate(hits):
            pid = hit.passage.passage_id
            if pid not in merged:
                merged[pid] = Hit(hit.passage, hit.score, dict(hit.scores))
            else:
                merged[pid].scores.update(hit.scores)
            best_rank[pid] = min(best_rank.get(pid, rank), rank)
    return merged, best_rank


def _ordered(merged: dict[int, Hit], fused: dict[int, float], best_rank: dict[int, int]) -> list[Hit]:
    out = []
    for pid, hit in merged.items():
        hit.score = fused[pid]
        hit.scores[STAGE] = fused[pid]
        out.append(hit)
    # Ties: the passage ranked better in some input list first, then the smaller id (deterministic).
    out.sort(key=lambda h: (-h.score, best_rank[h.passage.passage_id], h.passage.passage_id))
    return out


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[Hit]], weights: Mapping[str, float] | None = None, k: int = 60
) -> list[Hit]:
    """RRF of named rankings (each best first); ``weights`` default to 1 per ranking."""
    merged, best_rank = _merge(rankings)
    fused = dict.fromkeys(merged, 0.0)
    for name, hits in rankings.items():
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        for rank, hit in enumerate(hits, start=1):
            fused[hit.passage.passage_id] += w / (k + rank)
    return _ordered(merged, fused, best_rank)


def interpolate(rankings: Mapping[str, Sequence[Hit]], weights: Mapping[str, float] | None = None) -> list[Hit]:
    """Weighted sum of min-max normalized scores; a list of equal scores normalizes to 1."""
    merged, best_rank = _merge(rankings)
    fused = dict.fromkeys(merged, 0.0)
    for name, hits in rankings.items():
        if not hits:
            continue
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        scores = [h.score for h in hits]
        lo, hi = min(scores), max(scores)
        for hit in hits:
            norm = (hit.score - lo) / (hi - lo) if hi > lo else 1.0
            fused[hit.passage.passage_id] += w * norm
    return _ordered(merged, fused, best_rank)


class Fusion:
    """The configured fusion of a dense and a sparse ranking (``rankings`` keyed dense / sparse)."""

    stage = STAGE

    def __init__(self, config: FusionConfig | None = None) -> None:
        self.config = config or FusionConfig()

    def fuse(self, dense: Sequence[Hit], sparse: Sequence[Hit]) -> list[Hit]:
        c = self.config
        rankings = {"dense": dense, "sparse": sparse}
        weights = {"dense": c.dense_weight, "sparse": c.sparse_weight}
        if c.method == "rrf":
            return reciprocal_rank_fusion(rankings, weights, c.rrf_k)
        return interpolate(rankings, weights)
