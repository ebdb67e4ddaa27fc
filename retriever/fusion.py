"""Hybrid fusion of ranked lists (dense, sparse, ...) over the same passage ids.

- Reciprocal-rank fusion (Cormack et al. 2009): ``score(p) = sum_r w_r / (k + rank_r(p))`` with
  1-based ranks; a passage missing from a ranking gets nothing from it.
- Normalized score interpolation: each ranking's scores are min-max normalized to [0, 1] over its
  list, then ``score(p) = sum_r w_r * norm_r(p)``; a passage missing from a ranking counts as 0 (the
  bottom of that list).
Every fused hit keeps the per-stage scores of its inputs and adds ``scores["fusion"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from retriever.config import FusionConfig
from retriever.protocols import Hit, Scored

STAGE = "fusion"


def _merge(rankings: Mapping[str, Sequence[Scored]]) -> tuple[dict[int, Scored], dict[int, int]]:
    """One result per passage id (carrying every stage's score) and its best rank anywhere."""
    merged: dict[int, Scored] = {}
    best_rank: dict[int, int] = {}
    for hits in rankings.values():
        for rank, hit in enumerate(hits):
            pid = hit.passage_id
            if pid not in merged:
                merged[pid] = Scored(pid, hit.score, dict(hit.scores))
            else:
                merged[pid].scores.update(hit.scores)
            best_rank[pid] = min(best_rank.get(pid, rank), rank)
    return merged, best_rank


def _ordered(merged: dict[int, Scored], fused: dict[int, float], best_rank: dict[int, int]) -> list[Scored]:
    out = []
    for pid, hit in merged.items():
        hit.score = fused[pid]
        hit.scores[STAGE] = fused[pid]
        out.append(hit)
    # Ties: the passage ranked better in some input list first, then the smaller id (deterministic).
    out.sort(key=lambda h: (-h.score, best_rank[h.passage_id], h.passage_id))
    return out


def rrf_scored(
    rankings: Mapping[str, Sequence[Scored]], weights: Mapping[str, float] | None = None, k: int = 60
) -> list[Scored]:
    """RRF of named rankings of passage ids (each best first); ``weights`` default to 1 per ranking."""
    merged, best_rank = _merge(rankings)
    fused = dict.fromkeys(merged, 0.0)
    for name, hits in rankings.items():
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        for rank, hit in enumerate(hits, start=1):
            fused[hit.passage_id] += w / (k + rank)
    return _ordered(merged, fused, best_rank)


def interpolate_scored(rankings: Mapping[str, Sequence[Scored]], weights: Mapping[str, float] | None = None) -> list[Scored]:
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
            fused[hit.passage_id] += w * norm
    return _ordered(merged, fused, best_rank)


def _on_hits(fuse: Callable[[dict[str, list[Scored]]], list[Scored]], rankings: Mapping[str, Sequence[Hit]]) -> list[Hit]:
    """Fuse rankings of hits (passages read already) through the same code as rankings of ids."""
    passages = {h.passage.passage_id: h.passage for hits in rankings.values() for h in hits}
    fused = fuse({name: [Scored(h.passage.passage_id, h.score, h.scores) for h in hits] for name, hits in rankings.items()})
    return [Hit(passages[r.passage_id], r.score, r.scores) for r in fused]


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[Hit]], weights: Mapping[str, float] | None = None, k: int = 60
) -> list[Hit]:
    """RRF of named rankings (each best first); ``weights`` default to 1 per ranking."""
    return _on_hits(lambda r: rrf_scored(r, weights, k), rankings)


def interpolate(rankings: Mapping[str, Sequence[Hit]], weights: Mapping[str, float] | None = None) -> list[Hit]:
    """Weighted sum of min-max normalized scores; a list of equal scores normalizes to 1."""
    return _on_hits(lambda r: interpolate_scored(r, weights), rankings)


class Fusion:
    """The configured fusion of a dense and a sparse ranking (``rankings`` keyed dense / sparse)."""

    stage = STAGE

    def __init__(self, config: FusionConfig | None = None) -> None:
        self.config = config or FusionConfig()

    def fuse(self, dense: Sequence[Hit], sparse: Sequence[Hit]) -> list[Hit]:
        return _on_hits(self._fuse, {"dense": dense, "sparse": sparse})

    def fuse_scored(self, dense: Sequence[Scored], sparse: Sequence[Scored]) -> list[Scored]:
        """`fuse` over passage ids, before any passage is read."""
        return self._fuse({"dense": dense, "sparse": sparse})

    def _fuse(self, rankings: Mapping[str, Sequence[Scored]]) -> list[Scored]:
        c = self.config
        weights = {"dense": c.dense_weight, "sparse": c.sparse_weight}
        if c.method == "rrf":
            return rrf_scored(rankings, weights, c.rrf_k)
        return interpolate_scored(rankings, weights)
