"""HNSW graph over full-precision vectors: sub-millisecond queries, RAM for vectors plus graph.

Ids are row numbers (batches in global-id order, as for flat). Deleted ids are filtered during the
graph walk by the same IDSelector, so a delete does not shrink the result list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from datastore.config import HNSWConfig
from datastore.index.base import (
    Exclusion,
    VectorSource,
    as_exclusion,
    as_queries,
    check_batch,
    check_metric,
    clean,
    empty_result,
    faiss_read,
    read_index_file,
    write_meta,
)
from datastore.index.flat import check_sequential


class HNSWIndex:
    kind: ClassVar[str] = "hnsw"
    FILE = "index.hnsw.faiss"

    def __init__(
        self, dim: int, config: HNSWConfig | None = None, index: Any = None, *, path: Path | None = None
    ) -> None:
        self.dim = dim
        self.config = config or HNSWConfig()
        if index is None:
            index = faiss.IndexHNSWFlat(dim, self.config.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.config.ef_construction
        self.index = index
        self.index.hnsw.efSearch = self.config.ef_search
        self._mapped_from = path

    @classmethod
    def from_config(
        cls,
        config: HNSWConfig | None = None,
        *,
        dim: int,
        metric: str = "ip",
        workdir: Path | None = None,
        memory_mb: int = 2048,
    ) -> HNSWIndex:
        check_metric(metric)
        return cls(dim, config)

    def training_size(self, n_total: int) -> int:
        return 0

    def train(self, sample: np.ndarray, *, n_total: int | None = None) -> None:
        """Nothing to learn."""

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x, ids = check_batch(vectors, ids, self.dim)
        check_sequential(ids, self.ntotal, self.kind)
        if self._mapped_from is not None:  # mapped storage is read-only: take a private copy first
            self.index = faiss_read(self._mapped_from)
            self.index.hnsw.efSearch = self.config.ef_search
            self._mapped_from = None
        self.index.add(x)

    def build(self, vectors: np.ndarray) -> None:
        """Compatibility with the per-shard builder: add ``vectors`` as ids 0..n-1."""
        self.add(vectors, np.arange(self.ntotal, self.ntotal + len(vectors), dtype=np.int64))

    def search(
        self, queries: np.ndarray, k: int, *, exclude: np.ndarray | Exclusion | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = as_queries(queries, self.dim)
        if self.ntotal == 0 or k <= 0:
            return empty_result(len(q), max(k, 0))
        excl = as_exclusion(exclude)
        sel = excl.selector() if excl is not None else None
        params = faiss.SearchParametersHNSW(efSearch=max(self.config.ef_search, k))  # type: ignore[attr-defined]  # faiss stubs lag the SWIG API
        if sel is not None:
            params.sel = sel
        scores, ids = self.index.search(q, k, params=params)
        return clean(scores, ids)

    def save(self, directory: Path) -> list[str]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / self.FILE))
        meta = write_meta(
            directory,
            {"kind": self.kind, "dim": self.dim, "ntotal": self.ntotal, "metric": "ip", "m": self.config.m},
        )
        return [self.FILE, meta]

    @classmethod
    def load(
        cls,
        directory: Path,
        dim: int,
        config: HNSWConfig | None = None,
        *,
        vectors: VectorSource | np.ndarray | None = None,
        mmap: bool = True,
        **_: Any,
    ) -> HNSWIndex:
        path = Path(directory) / cls.FILE
        index = read_index_file(directory, cls.FILE, cls.kind, dim, mmap=mmap)
        return cls(dim, config, index, path=path if mmap else None)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def memory_bytes(self) -> int:
        links = self.config.m * 2 * 4 + self.config.m * 4 // 8 + 8
        vectors = 0 if self._mapped_from is not None else self.dim * 4
        return self.ntotal * (vectors + links)
