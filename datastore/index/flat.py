"""Exact inner-product search (FAISS IndexFlatIP): the reference's index, right for small shards."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import faiss
import numpy as np

from datastore.index.base import as_queries, clean, empty_result, register


@register
class FlatIndex:
    kind: ClassVar[str] = "flat"
    FILE = "index.flat.faiss"

    def __init__(self, dim: int, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.index = index if index is not None else faiss.IndexFlatIP(dim)

    def build(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = as_queries(queries, self.dim)
        if self.ntotal == 0 or k <= 0:
            return empty_result(len(q), max(k, 0))
        scores, ids = self.index.search(q, k)
        return clean(scores, ids)

    def save(self, directory: Path) -> list[str]:
        faiss.write_index(self.index, str(directory / self.FILE))
        return [self.FILE]

    @classmethod
    def load(cls, directory: Path, dim: int, vectors: np.ndarray | None = None, **_: object) -> FlatIndex:
        return cls(dim, faiss.read_index(str(directory / cls.FILE)))

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def memory_bytes(self) -> int:
        return self.ntotal * self.dim * 4
