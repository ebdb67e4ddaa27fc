"""Frozen vectors that training and pilot scoring rank against: the corpus plus each query's golds.

Passages stay in the base encoder's space; only queries move. A positive that is already a corpus
passage (cosine >= ``dup_threshold`` to a stored vector) is identified with it, so it is never also
counted as a negative of its own query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from router.experts import Pair


@dataclass
class PairSet:
    """Pairs grouped by query: distinct queries, distinct positives, gold positive ids per query."""

    queries: list[str]
    positives: list[str]
    gold: list[list[int]]  # per query: indices into positives

    @classmethod
    def from_pairs(cls, pairs: Sequence[Pair]) -> PairSet:
        q_index: dict[str, int] = {}
        p_index: dict[str, int] = {}
        gold: list[list[int]] = []
        for pair in pairs:
            qi = q_index.setdefault(pair.query, len(q_index))
            pi = p_index.setdefault(pair.positive, len(p_index))
            if qi == len(gold):
                gold.append([])
            if pi not in gold[qi]:
                gold[qi].append(pi)
        return cls(list(q_index), list(p_index), gold)


@dataclass
class CandidatePool:
    """Corpus vectors + positives not already in it; ``pos_row[i]`` is positive i's row."""

    vectors: np.ndarray
    pos_row: np.ndarray
    corpus_size: int

    @classmethod
    def build(
        cls,
        positive_vectors: np.ndarray,
        corpus: np.ndarray | None,
        dup_threshold: float = 0.98,
    ) -> CandidatePool:
        corpus = np.zeros((0, positive_vectors.shape[1]), np.float32) if corpus is None else corpus
        pos_row = np.full(len(positive_vectors), -1, dtype=np.int64)
        if len(corpus):
            for s in range(0, len(positive_vectors), 1024):
                sims = positive_vectors[s : s + 1024] @ corpus.T
                best = sims.argmax(1)
                hit = sims[np.arange(len(best)), best] >= dup_threshold
                pos_row[s : s + 1024][hit] = best[hit]
        extra = np.flatnonzero(pos_row < 0)
        pos_row[extra] = len(corpus) + np.arange(len(extra))
        vectors = np.concatenate([corpus, positive_vectors[extra]]).astype(np.float32, copy=False)
        return cls(vectors, pos_row, len(corpus))


def embed_positives(
    positives: Sequence[str],
    lookup: dict[str, int] | None,
    corpus: np.ndarray | None,
    encode: Callable[[Sequence[str]], np.ndarray],
) -> np.ndarray:
    """Base vectors of positives: the stored corpus vector when the text is a datastore passage
    (no re-embedding, and exactly the vector search ranks), else encoded by the base."""
    dim = corpus.shape[1] if corpus is not None and len(corpus) else None
    rows = [lookup.get(t, -1) if lookup else -1 for t in positives]
    missing = [i for i, r in enumerate(rows) if r < 0]
    fresh = encode([positives[i] for i in missing]) if missing else None
    dim = dim or (fresh.shape[1] if fresh is not None else 0)
    out = np.zeros((len(positives), dim), dtype=np.float32)
    for i, r in enumerate(rows):
        if r >= 0 and corpus is not None:
            out[i] = corpus[r]
    if fresh is not None:
        out[missing] = fresh
    return out


def ndcg_at_k(query_vectors: np.ndarray, gold_rows: Sequence[Sequence[int]], pool: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-query binary nDCG@k of ranking ``pool`` by inner product (exact, brute force)."""
    out = np.zeros(len(query_vectors), dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for s in range(0, len(query_vectors), 256):
        scores = query_vectors[s : s + 256] @ pool.T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        for r, row in enumerate(top):
            order = row[np.argsort(-scores[r, row], kind="stable")]
            gold = set(int(g) for g in gold_rows[s + r])
            if not gold:
                continue
            dcg = sum(discounts[i] for i, d in enumerate(order) if int(d) in gold)
            idcg = discounts[: min(len(gold), k)].sum()
            out[s + r] = dcg / idcg
    return out
