"""Exact inner-product search (FAISS IndexFlatIP): the reference's index, right for small datastores.

Ids are the FAISS row numbers, so batches must arrive in global-id order without gaps (the
datastore's ids are consecutive by construction). Loaded with ``mmap`` the float32 rows stay in the
page cache, shared by every replica.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from datastore.errors import DatastoreError
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


def check_sequential(ids: np.ndarray, ntotal: int, kind: str) -> None:
    """Flat and HNSW number rows 0..n-1 themselves: ids must continue from ``ntotal``."""
    if len(ids) and not (ids[0] == ntotal and np.array_equal(ids, np.arange(ntotal, ntotal + len(ids)))):
        raise DatastoreError(
            f"{kind} index holds ids 0..{ntotal - 1}; this batch starts at id {int(ids[0])} or has gaps",
            hint="add batches in global-id order without gaps (ids = np.arange(ntotal, ntotal + n))",
        )


class FlatIndex:
    kind: ClassVar[str] = "flat"
    FILE = "index.flat.faiss"

    def __init__(self, dim: int, config: Any = None, index: Any = None, *, path: Path | None = None) -> None:
        self.dim = dim
        self.index = index if index is not None else faiss.IndexFlatIP(dim)
        self._mapped_from = path  # set while the rows are memory-mapped (read-only)

    @classmethod
    def from_config(
        cls, config: Any = None, *, dim: int, metric: str = "ip", workdir: Path | None = None, memory_mb: int = 2048
    ) -> FlatIndex:
        check_metric(metric)
        return cls(dim)

    def training_size(self, n_total: int) -> int:
        return 0

    def train(self, sample: np.ndarray, *, n_total: int | None = None) -> None:
        """Nothing to learn."""

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x, ids = check_batch(vectors, ids, self.dim)
        check_sequential(ids, self.ntotal, self.kind)
        if self._mapped_from is not None:  # mapped rows are read-only: take a private copy first
            self.index = faiss_read(self._mapped_from)
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
        params = faiss.SearchParameters(sel=sel) if sel is not None else None  # type: ignore[call-arg]  # faiss stubs lag the SWIG API
        scores, ids = self.index.search(q, k, params=params)
        return clean(scores, ids)

    def save(self, directory: Path) -> list[str]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / self.FILE))
        meta = write_meta(directory, {"kind": self.kind, "dim": self.dim, "ntotal": self.ntotal, "metric": "ip"})
        return [self.FILE, meta]

    @classmethod
    def load(
        cls,
        directory: Path,
        dim: int,
        config: Any = None,
        *,
        vectors: VectorSource | np.ndarray | None = None,
        mmap: bool = True,
        **_: Any,
    ) -> FlatIndex:
        path = Path(directory) / cls.FILE
        index = read_index_file(directory, cls.FILE, cls.kind, dim, mmap=mmap)
        return cls(dim, index=index, path=path if mmap else None)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def memory_bytes(self) -> int:
        return 0 if self._mapped_from is not None else self.ntotal * self.dim * 4
