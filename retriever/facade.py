"""The `Retriever` facade: dense + sparse first stages, fusion, reranking, the per-paper cap.

``retrieve(query, k)`` returns a `Retrieval`: the hits (best first), what the query encoder
decided (the router's expert, if any) and how long each stage took. Every hit carries its score
at each stage it passed in ``hit.scores`` (``dense``, ``bm25``, ``fusion``, ``rerank``); ``hit.score``
is the score of the last stage it passed. With a reranker, only the top ``reranker.candidates``
are re-scored; hits below that window follow them in first-stage order with first-stage scores.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any

from retriever.config import RetrievalConfig
from retriever.dense import DenseRetriever
from retriever.fusion import Fusion
from retriever.protocols import Hit, Routing, Scored, fetch_hits
from retriever.reranker import Reranker
from retriever.sparse.protocol import SparseRetriever


def _read(datastore: Any, ranked: Sequence[Scored], block: int) -> Iterator[Hit]:
    """The hits of ``ranked`` in order, their passages read ``block`` ids at a time, skipping ids with
    no live passage (deleted since the index was searched)."""
    for start in range(0, len(ranked), block):
        yield from fetch_hits(datastore, ranked[start : start + block])


@dataclass
class Retrieval:
    """Hits best first, the encoder's routing decision (None without a router), stage timings in ms."""

    hits: list[Hit]
    routing: Routing | None = None
    timings: dict[str, float] = field(default_factory=dict)


def cap_per_paper(hits: Iterable[Hit], max_per_paper: int, k: int | None = None) -> list[Hit]:
    """Keep at most ``max_per_paper`` hits of each paper, in order (the reference let max+1 through);
    with ``k``, stop at the first ``k`` kept (``hits`` is read no further)."""
    counts: dict[str, int] = {}
    out: list[Hit] = []
    if k is not None and k <= 0:
        return out
    for hit in hits:
        n = counts.get(hit.passage.paper_id, 0)
        if n < max_per_paper:
            counts[hit.passage.paper_id] = n + 1
            out.append(hit)
            if len(out) == k:
                break
    return out


class Retriever:
    """Composes the configured stages; at least one of ``dense`` and ``sparse`` is required."""

    def __init__(
        self,
        config: RetrievalConfig | None = None,
        *,
        dense: DenseRetriever | None = None,
        sparse: SparseRetriever | None = None,
        reranker: Reranker | None = None,
        fusion: Fusion | None = None,
        pipeline: str | None = None,
    ) -> None:
        if dense is None and sparse is None:
            raise ValueError("a Retriever needs a dense or a sparse first stage")
        self.config = config or RetrievalConfig()
        self.dense = dense
        self.sparse = sparse
        self.reranker = reranker
        self.fusion = fusion or Fusion(self.config.fusion)
        self.pipeline = pipeline or "custom"  # the recipe's name, for display

    def retrieve(self, query: str, k: int | None = None) -> Retrieval:
        """The top ``k`` (default ``top_k``) passages for ``query``, at most ``max_per_paper`` per paper."""
        k = self.config.top_k if k is None else k
        cfg = self.config
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        routing: Routing | None = None
        # A first stage must return enough passages for k papers after the per-paper cap.
        n = max(cfg.candidates, k)
        dense: list[Scored] = []
        sparse: list[Scored] = []
        if self.dense is not None:
            t = time.perf_counter()
            batch, routed = self.dense.search_ids_routed([query], n)
            dense = batch[0]
            routing = routed[0] if routed else None
            timings["dense_ms"] = (time.perf_counter() - t) * 1000
        if self.sparse is not None:
            t = time.perf_counter()
            sparse = self.sparse.search_ids_batch([query], n)[0]
            timings["sparse_ms"] = (time.perf_counter() - t) * 1000
        if self.dense is not None and self.sparse is not None:
            t = time.perf_counter()
            ranked = self.fusion.fuse_scored(dense, sparse)
            timings["fusion_ms"] = (time.perf_counter() - t) * 1000
        else:
            ranked = dense or sparse
        # Passages are read only now, for the hits returned (and the reranker's window): in fused
        # order, a block at a time, until k hits pass the per-paper cap.
        datastore = (self.dense or self.sparse).datastore  # type: ignore[union-attr]
        window_size = cfg.reranker.candidates if self.reranker is not None else 0
        hits_in_order = _read(datastore, ranked, max(window_size, k + k // 2 + 1))
        t = time.perf_counter()
        window = list(islice(hits_in_order, window_size))
        timings["fetch_ms"] = (time.perf_counter() - t) * 1000
        if window:
            t = time.perf_counter()
            window = self.reranker.rerank(query, window)  # type: ignore[union-attr]
            timings["rerank_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        hits = cap_per_paper(chain(window, hits_in_order), cfg.max_per_paper, k)
        timings["fetch_ms"] += (time.perf_counter() - t) * 1000
        timings["total_ms"] = (time.perf_counter() - t_start) * 1000
        return Retrieval(hits, routing, timings)

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        """Just the hits of `retrieve`."""
        return self.retrieve(query, k).hits
