"""Sparse backends by name: one file per backend, one entry here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datastore.datastore import Datastore
from retriever.config import SparseConfig
from retriever.errors import UnknownBackend
from retriever.sparse.protocol import SparseRetriever


def _bm25s() -> type:
    from retriever.sparse.bm25s_backend import BM25sRetriever

    return BM25sRetriever


def _lucene() -> type:
    from retriever.sparse.lucene_backend import LuceneRetriever

    return LuceneRetriever


# Imported lazily: the lucene backend's module is cheap, but its extra may be absent.
SPARSE_BACKENDS: dict[str, Callable[[], Any]] = {"bm25s": _bm25s, "lucene": _lucene}


def sparse_backend(name: str) -> Any:
    """The backend class registered as ``name``; an unknown name lists the known ones."""
    if name not in SPARSE_BACKENDS:
        raise UnknownBackend("sparse backend", name, list(SPARSE_BACKENDS))
    return SPARSE_BACKENDS[name]()


def open_sparse(
    datastore: Datastore, config: SparseConfig | None = None, *, backend: str | None = None, build: bool = True
) -> SparseRetriever:
    """The configured sparse retriever over ``datastore``, building its index if missing or stale."""
    config = config or SparseConfig()
    return sparse_backend(backend or config.backend)(datastore, config, build=build)  # type: ignore[no-any-return]


def build_sparse_index(datastore: Datastore, config: SparseConfig | None = None, *, backend: str | None = None) -> None:
    """(Re)build the index of ``backend`` (default: the configured one) from the live passages."""
    config = config or SparseConfig()
    sparse_backend(backend or config.backend).build_index(datastore, config)
