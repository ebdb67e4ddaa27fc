"""Sparse backends by name: one file per backend, one entry here; ``auto`` picks one by size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

from datastore.datastore import Datastore
from retriever.config import ConcreteSparseBackend, SparseConfig
from retriever.errors import UnknownBackend
from retriever.sparse.protocol import Change, SparseRetriever, SyncOutcome


def _bm25s() -> type:
    from retriever.sparse.bm25s_backend import BM25sRetriever

    return BM25sRetriever


def _lucene() -> type:
    from retriever.sparse.lucene_backend import LuceneRetriever

    return LuceneRetriever


# Imported lazily: the lucene backend's module is cheap, but its extra may be absent.
SPARSE_BACKENDS: dict[str, Callable[[], Any]] = {"bm25s": _bm25s, "lucene": _lucene}
if set(SPARSE_BACKENDS) != set(get_args(ConcreteSparseBackend)):  # pragma: no cover - added to one list only
    raise AssertionError(f"sparse backends {sorted(SPARSE_BACKENDS)} != {get_args(ConcreteSparseBackend)}")


def sparse_backend(name: str) -> Any:
    """The backend class registered as ``name``; an unknown name lists the known ones."""
    if name not in SPARSE_BACKENDS:
        raise UnknownBackend("sparse backend", name, [*SPARSE_BACKENDS, "auto"])
    return SPARSE_BACKENDS[name]()


def pick_backend(live_passages: int, config: SparseConfig, backend: str | None = None) -> str:
    """The concrete backend for a datastore of ``live_passages``: ``auto`` means bm25s below
    ``config.auto_lucene_from`` live passages and Lucene from there on."""
    name = backend or config.backend
    if name == "auto":
        return "lucene" if live_passages >= config.auto_lucene_from else "bm25s"
    sparse_backend(name)  # unknown names fail here, listing the known ones
    return name


def resolve_backend(datastore: Datastore, config: SparseConfig, backend: str | None = None) -> str:
    return pick_backend(len(datastore), config, backend)


def open_sparse(
    datastore: Datastore, config: SparseConfig | None = None, *, backend: str | None = None, build: bool = True
) -> SparseRetriever:
    """The configured sparse retriever over ``datastore``; a missing or stale index is built or updated
    (by the change since its stamp) first, or refused with ``build=False``."""
    config = config or SparseConfig()
    name = resolve_backend(datastore, config, backend)
    return sparse_backend(name)(datastore, config, build=build)  # type: ignore[no-any-return]


def build_sparse_index(datastore: Datastore, config: SparseConfig | None = None, *, backend: str | None = None) -> None:
    """Build the index of ``backend`` (default: the configured one) afresh from the live passages."""
    config = config or SparseConfig()
    sparse_backend(resolve_backend(datastore, config, backend)).build_index(datastore, config)


def sync_sparse_index(
    datastore: Datastore, config: SparseConfig | None = None, change: Change | None = None, *, backend: str | None = None
) -> tuple[str, SyncOutcome]:
    """Bring the index of ``backend`` up to date by ``change`` (built if absent); returns (backend, outcome)."""
    config = config or SparseConfig()
    name = resolve_backend(datastore, config, backend)
    return name, sparse_backend(name).sync(datastore, config, change)
