"""The datastore's one vector index: every call finalize and the read side make to datastore/index.

Kept in one module so that the datastore code sees one small surface (choose a kind, create, train,
add, save, load, search excluding tombstones) whatever the index package's internals are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datastore.config import DatastoreConfig
from datastore.index.choose import choose_kind
from datastore.index.registry import create_index, kind_config, load_index
from datastore.part_vectors import PartVectors

__all__ = ["choose", "create", "kind_config", "load"]


def choose(count: int, dim: int, config: DatastoreConfig) -> str:
    """The index kind for ``count`` vectors of ``dim`` (auto: by count and by RAM, never beyond the budget)."""
    return choose_kind(count, dim, config)


def create(kind: str, dim: int, config: DatastoreConfig, *, workdir: Path | None = None) -> Any:
    """A new, empty index of ``kind`` (``workdir``: scratch space for on-disk inverted lists)."""
    return create_index(kind, dim, config, workdir=workdir)


def load(directory: Path, dim: int, config: DatastoreConfig, vectors: PartVectors, *, workdir: Path | None = None) -> Any:
    """The index saved in ``directory`` (kind read from its index.json); IVF-PQ re-scores from ``vectors``."""
    return load_index(directory, dim, config, vectors=vectors, mmap=True, workdir=workdir)
