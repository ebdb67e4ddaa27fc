"""The datastore's one vector index: every call finalize and the read side make to datastore/index.

Kept in one module so that the datastore code sees one small surface (choose a kind, create, train,
add, save, load, search excluding tombstones) whatever the index package's internals are.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from datastore.config import DatastoreConfig
from datastore.part_vectors import PartVectors

TRAIN_POINTS_PER_LIST = 64


def _new_api() -> Any:
    """The index package's new face (ds-index: choose_kind + registry), or None before it lands."""
    import datastore.index as pkg

    return pkg if hasattr(pkg, "choose_kind") else None


def kind_config(kind: str, config: DatastoreConfig) -> Any:
    return {"ivfpq": config.ivfpq, "hnsw": config.hnsw}.get(kind)


def choose(count: int, dim: int, config: DatastoreConfig) -> str:
    """The index kind for ``count`` vectors of ``dim`` under ``config`` (auto: by count and RAM)."""
    api = _new_api()
    if api is not None:
        return str(api.choose_kind(count, dim, config))
    if config.index != "auto":
        return config.index
    budget = float(getattr(config, "max_index_ram_gb", 16.0)) * 2**30
    full = count * dim * 4.0
    if count <= config.auto_flat_max and full <= budget:
        return "flat"
    if count <= config.auto_hnsw_max and full * 1.2 <= budget:
        return "hnsw"
    return "ivfpq"


def train_rows(kind: str, count: int, dim: int, config: DatastoreConfig) -> int:
    """How many vectors training wants (0: no training), bounded by ``build_memory_mb``."""
    if kind != "ivfpq":
        return 0
    nlist = config.ivfpq.nlist or int(4 * math.sqrt(max(count, 1)))
    nlist = max(1, min(nlist, max(count // 39, 1)))
    cap = int(getattr(config, "build_memory_mb", 2048)) * 2**20 // (4 * dim * 2)
    return int(min(count, max(nlist * TRAIN_POINTS_PER_LIST, 2**config.ivfpq.nbits * 39), cap))


def create(kind: str, dim: int, config: DatastoreConfig, *, count: int = 0) -> Any:
    """A new, empty index of ``kind``."""
    api = _new_api()
    if api is not None:
        return api.index_class(kind).from_config(dim, kind_config(kind, config), metric="ip")
    return _Legacy(kind, dim, config)


def load(directory: Path, kind: str, dim: int, config: DatastoreConfig, vectors: PartVectors) -> Any:
    """The index saved in ``directory``; IVF-PQ re-scores from ``vectors``."""
    api = _new_api()
    if api is not None:
        return api.index_class(kind).load(directory, dim, kind_config(kind, config), vectors=vectors, mmap=True)
    return _Legacy.load(directory, kind, dim, config, vectors)


def attach_vectors(index: Any, vectors: PartVectors) -> None:
    """Point a freshly built index at the parts' stored vectors for exact re-scoring."""
    if hasattr(index, "set_vectors"):
        index.set_vectors(vectors)
    elif hasattr(index, "vectors"):
        index.vectors = vectors


class _Legacy:
    """Adapter over the format-1 index classes until the global index API lands (ds-index)."""

    def __init__(self, kind: str, dim: int, config: DatastoreConfig, inner: Any = None) -> None:
        from datastore.index.base import index_class

        self.kind = kind
        self.dim = dim
        self._cls: Any = index_class(kind)
        params = kind_config(kind, config)
        self.inner = inner if inner is not None else (self._cls(dim, params) if params is not None else self._cls(dim))
        self._pending: list[np.ndarray] = []

    def train(self, sample: np.ndarray) -> None:
        return None

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self._pending.append(np.asarray(vectors, dtype=np.float32))

    def save(self, directory: Path) -> list[str]:
        if self._pending:
            self.inner.build(np.concatenate(self._pending))
            self._pending = []
        return list(self.inner.save(directory))

    @classmethod
    def load(cls, directory: Path, kind: str, dim: int, config: DatastoreConfig, vectors: PartVectors) -> _Legacy:
        from datastore.index.base import index_class

        inner_cls: Any = index_class(kind)
        inner = inner_cls.load(directory, dim, vectors=vectors, config=kind_config(kind, config))
        return cls(kind, dim, config, inner)

    @property
    def vectors(self) -> Any:
        return getattr(self.inner, "vectors", None)

    @vectors.setter
    def vectors(self, value: Any) -> None:
        if hasattr(self.inner, "vectors"):
            self.inner.vectors = value

    @property
    def ntotal(self) -> int:
        return int(self.inner.ntotal)

    def memory_bytes(self) -> int:
        return int(self.inner.memory_bytes())

    def search(self, queries: np.ndarray, k: int, *, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        extra = int(np.count_nonzero(exclude)) if exclude is not None else 0
        scores, ids = self.inner.search(queries, min(k + extra, max(self.ntotal, 1)))
        if exclude is not None:
            dead = np.zeros(ids.shape, dtype=bool)
            ok = ids >= 0
            dead[ok] = np.asarray(exclude)[ids[ok]] != 0
            scores = np.where(dead, -np.inf, scores)
            ids = np.where(dead, -1, ids)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out_s = np.take_along_axis(scores, order, axis=1)
        out_i = np.take_along_axis(ids, order, axis=1)
        out_i[~np.isfinite(out_s)] = -1
        if out_s.shape[1] < k:
            pad = k - out_s.shape[1]
            out_s = np.pad(out_s, ((0, 0), (0, pad)), constant_values=-np.inf)
            out_i = np.pad(out_i, ((0, 0), (0, pad)), constant_values=-1)
        return out_s.astype(np.float32), out_i.astype(np.int64)
