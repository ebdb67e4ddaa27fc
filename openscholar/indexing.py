"""Indexes derived from a datastore's passages, kept in step after build, add and delete."""

from __future__ import annotations

import logging
from pathlib import Path

from openscholar.settings import Settings
from retriever.sparse.protocol import Change

log = logging.getLogger(__name__)

__all__ = ["Change", "refresh_derived_indexes", "sparse_backends_in_use"]


def sparse_backends_in_use(settings: Settings, live_passages: int) -> list[str]:
    """The concrete sparse backends the configured retrieval uses (``auto`` resolved by size)."""
    from openscholar.retrieval import resolve_recipe
    from retriever.sparse import pick_backend

    recipe = resolve_recipe(settings)
    if recipe.sparse == "none":
        return []
    return [pick_backend(live_passages, settings.retrieval.sparse, recipe.sparse)]


def refresh_derived_indexes(settings: Settings, root: Path, change: Change | None = None) -> list[str]:
    """Bring the sparse indexes the settings use up to date after the passages changed; returns them.

    Only backends the configured retrieval uses are touched (``auto`` picks bm25s or Lucene by the
    datastore's size), and only by the change: new ids are appended, deleted ids dropped. Each
    index's stamp is what decides what is missing, so ``change`` may be None (catch up) and a
    refresh that was missed is made up for here or when the index is next opened.
    """
    from datastore.datastore import Datastore
    from retriever.sparse import sync_sparse_index

    datastore = Datastore.open(root, config=settings.datastore, verify="fast")
    try:
        backends = sparse_backends_in_use(settings, len(datastore))
        for backend in backends:
            _, outcome = sync_sparse_index(datastore, settings.retrieval.sparse, change, backend=backend)
            log.info("%s index of %s: %s", backend, root, outcome)
    finally:
        datastore.close()
    return backends
