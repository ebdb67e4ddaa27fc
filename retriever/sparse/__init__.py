"""Sparse (BM25) retrieval over a datastore's passages: protocol, registry, backends."""

from retriever.sparse.protocol import SparseRetriever, index_text
from retriever.sparse.registry import (
    SPARSE_BACKENDS,
    build_sparse_index,
    open_sparse,
    sparse_backend,
)

__all__ = ["SPARSE_BACKENDS", "SparseRetriever", "build_sparse_index", "index_text", "open_sparse", "sparse_backend"]
