"""Indexes derived from a datastore's passages, kept in step after build, add and delete."""

from __future__ import annotations

import logging
from pathlib import Path

from openscholar.settings import Settings

log = logging.getLogger(__name__)


def refresh_derived_indexes(settings: Settings, root: Path) -> list[str]:
    """Rebuild the sparse indexes after the datastore's passages changed; returns the backends built.

    bm25s is always built (it is the embedded default and takes seconds per 100k passages); the
    Lucene index only when ``retrieval.sparse.backend`` is ``lucene`` (else it is built on first use).
    """
    from datastore.datastore import Datastore
    from retriever.sparse import build_sparse_index

    backends = ["bm25s"] + (["lucene"] if settings.retrieval.sparse.backend == "lucene" else [])
    datastore = Datastore.open(root, config=settings.datastore, verify="fast")
    try:
        for backend in backends:
            log.info("building the %s index of %s", backend, root)
            build_sparse_index(datastore, settings.retrieval.sparse, backend=backend)
    finally:
        datastore.close()
    return backends
