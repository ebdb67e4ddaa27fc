"""Sparse (BM25) retrieval over a datastore's passages: protocol, registry, backends."""

from retriever.sparse.protocol import Change, SparseRetriever, index_text
from retriever.sparse.registry import (
    SPARSE_BACKENDS,
    build_sparse_index,
    open_sparse,
    pick_backend,
    resolve_backend,
    sparse_backend,
    sync_sparse_index,
)

__all__ = [
    "SPARSE_BACKENDS",
    "Change",
    "SparseRetriever",
    "build_sparse_index",
    "index_text",
    "open_sparse",
    "pick_backend",
    "resolve_backend",
    "sparse_backend",
    "sync_sparse_index",
]
