"""Vector index backends by name (``datastore.index``), and the factories every caller uses.

``create_index`` / ``load_index`` pick the kind's config out of ``DatastoreConfig`` so callers never
branch on the kind; ``load_index`` reads the kind from the directory's ``index.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datastore.config import DatastoreConfig, IndexKind
from datastore.errors import DatastoreError
from datastore.index.base import VectorIndex, VectorSource, read_meta
from datastore.registry import Registry, UnknownName

# name -> "module:Class"; imported only when chosen.
INDEXES: Registry[VectorIndex] = Registry(
    "vector index",
    {
        "flat": "datastore.index.flat:FlatIndex",
        "hnsw": "datastore.index.hnsw:HNSWIndex",
        "ivfpq": "datastore.index.ivfpq:IVFPQIndex",
    },
    setting="datastore.index",
)
INDEXES.check_names(IndexKind, besides=["auto"])


def kind_config(kind: str, config: DatastoreConfig) -> Any:
    """The sub-config of ``kind`` (None for flat)."""
    return {"ivfpq": config.ivfpq, "hnsw": config.hnsw}.get(kind)


def create_index(kind: str, dim: int, config: DatastoreConfig | None = None, *, workdir: Path | None = None) -> VectorIndex:
    """An empty index of ``kind`` (not "auto": resolve it with ``choose_kind`` first)."""
    config = config or DatastoreConfig()
    return INDEXES.create(
        kind, kind_config(kind, config), dim=dim, workdir=workdir, memory_mb=config.build_memory_mb
    )


def load_index(
    directory: Path,
    dim: int,
    config: DatastoreConfig | None = None,
    *,
    vectors: VectorSource | np.ndarray | None = None,
    mmap: bool = True,
    workdir: Path | None = None,
) -> VectorIndex:
    """Open the index saved in ``directory`` (its kind is read from index.json)."""
    config = config or DatastoreConfig()
    kind = str(read_meta(Path(directory)).get("kind"))
    cls: Any = index_class(kind)
    index: VectorIndex = cls.load(
        Path(directory), dim, kind_config(kind, config), vectors=vectors, mmap=mmap, workdir=workdir,
        memory_mb=config.build_memory_mb,
    )
    return index


def index_class(kind: str) -> type:
    """The backend class of ``kind``; an unknown kind is a DatastoreError listing the known ones."""
    try:
        return INDEXES.get(kind)  # type: ignore[return-value]
    except UnknownName as exc:
        raise DatastoreError(exc.message, hint=f"use one of: auto, {', '.join(sorted(INDEXES.names()))}") from None


def known_kinds() -> list[str]:
    return sorted(INDEXES.names())
