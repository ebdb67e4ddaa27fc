"""The ``VectorIndex`` protocol and its registry.

An index holds one shard's vectors under local ids 0..n-1 (the datastore adds the shard's offset).
All indexes score by inner product on L2-normalized vectors, i.e. cosine similarity.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from datastore.errors import DatastoreError


@runtime_checkable
class VectorIndex(Protocol):
    kind: ClassVar[str]

    def build(self, vectors: np.ndarray) -> None:
        """Train (where needed) and add ``vectors`` (float32, normalized) as ids 0..n-1."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (nq, k), best first; missing results are id -1, score -inf."""
        ...

    def save(self, directory: Path) -> list[str]:
        """Write the index into ``directory``; returns the file names written."""
        ...

    @property
    def ntotal(self) -> int: ...

    def memory_bytes(self) -> int:
        """Bytes this index keeps in RAM (memory-mapped files excluded)."""
        ...


_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    _REGISTRY[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def index_class(kind: str) -> type:
    from datastore.index import flat, hnsw, ivfpq  # noqa: F401  (registration)

    try:
        return _REGISTRY[kind]
    except KeyError:
        raise DatastoreError(
            f"unknown index kind {kind!r}", hint=f"use one of: auto, {', '.join(sorted(_REGISTRY))}"
        ) from None


def known_kinds() -> list[str]:
    from datastore.index import flat, hnsw, ivfpq  # noqa: F401

    return sorted(_REGISTRY)


def as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if q.shape[1] != dim:
        raise DatastoreError(
            f"query vectors have dim {q.shape[1]} but the index has dim {dim}",
            hint="encode queries with the datastore's encoder",
        )
    return q


def empty_result(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)


def clean(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FAISS pads with id -1 and score -3.4e38 (or +inf); normalize padding to -inf."""
    scores = scores.astype(np.float32, copy=True)
    scores[ids < 0] = -np.inf
    return scores, ids.astype(np.int64, copy=False)
