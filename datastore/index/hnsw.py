"""HNSW graph over full-precision vectors: sub-millisecond queries, more RAM than IVF-PQ."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import faiss
import numpy as np

from datastore.config import HNSWConfig
from datastore.index.base import as_queries, clean, empty_result, register


@register
class HNSWIndex:
    kind: ClassVar[str] = "hnsw"
    FILE = "index.hnsw.faiss"

    def __init__(self, dim: int, config: HNSWConfig | None = None, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.config = config or HNSWConfig()
        if index is None:
            index = faiss.IndexHNSWFlat(dim, self.config.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.config.ef_construction
        self.index = index
        self.index.hnsw.efSearch = self.config.ef_search

    def build(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = as_queries(queries, self.dim)
        if self.ntotal == 0 or k <= 0:
            return empty_result(len(q), max(k, 0))
        params = faiss.SearchParametersHNSW(efSearch=max(self.config.ef_search, k))
        scores, ids = self.index.search(q, k, params=params)
        return clean(scores, ids)

    def save(self, directory: Path) -> list[str]:
        faiss.write_index(self.index, str(directory / self.FILE))
        return [self.FILE]

    @classmethod
    def load(
        cls, directory: Path, dim: int, vectors: np.ndarray | None = None, config: HNSWConfig | None = None, **_: object
    ) -> HNSWIndex:
        return cls(dim, config, faiss.read_index(str(directory / cls.FILE)))

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def memory_bytes(self) -> int:
        # vectors + graph links (2*M on level 0, ~M/(M-1)*M above) as int32
        return self.ntotal * (self.dim * 4 + self.config.m * 2 * 4 + self.config.m * 4 // 8)
