"""Wiring of the retrieval pipelines from settings: query encoder, first stages, fusion, reranker.

Pipelines: ``dense``, ``bm25`` (bm25s), ``bm25-lucene``, ``hybrid`` (dense + the configured sparse
backend, fused), ``hybrid+rerank``; ``router``, ``router+hybrid`` and ``router+hybrid+rerank`` are ``dense``,
``hybrid`` and ``hybrid+rerank``, all with the router's query encoder (`build_query_encoder`).
"""

from __future__ import annotations

from pathlib import Path

from datastore.datastore import Datastore
from openscholar.errors import ConfigError
from openscholar.settings import Settings
from retriever.dense import DenseRetriever
from retriever.errors import ModelUnavailable
from retriever.facade import Retriever
from retriever.fusion import Fusion
from retriever.protocols import Embedder, QueryEncoder
from retriever.reranker import ADAPTER_CONFIG, CrossEncoderReranker
from retriever.sparse import open_sparse

ROUTER_PIPELINES = ("router", "router+hybrid", "router+hybrid+rerank")
# pipeline -> (uses dense, sparse backend or None (or "config" for the configured one), reranks)
PIPELINES: dict[str, tuple[bool, str | None, bool]] = {
    "dense": (True, None, False),
    "bm25": (False, "bm25s", False),
    "bm25-lucene": (False, "lucene", False),
    "hybrid": (True, "config", False),
    "hybrid+rerank": (True, "config", True),
    "router": (True, None, False),
    "router+hybrid": (True, "config", False),
    "router+hybrid+rerank": (True, "config", True),
}
# The rerankers trained here and committed with the package (see docs/retrieval_report.md).
PACKAGED_MODELS = Path(__file__).resolve().parents[1] / "retriever" / "models"
PACKAGED_RERANKER = PACKAGED_MODELS / "reranker"


def build_query_encoder(settings: Settings, pipeline: str, embedder: Embedder | None = None) -> QueryEncoder:
    """The query encoder of ``pipeline``: the router's for router pipelines, else the base embedder."""
    if pipeline in ROUTER_PIPELINES:
        from router.factory import build_router_encoder

        return build_router_encoder(settings.router, settings.embedder, settings.cache_path, embedder)
    if embedder is not None:
        return embedder  # type: ignore[return-value]
    from openscholar.components import build_embedder

    return build_embedder(settings)


def reranker_path(settings: Settings, model: str | None = None) -> str:
    """Where a reranker loads from (default: ``retrieval.reranker.model``): 'default' is the trained one
    (the cache's, else the packaged one), a name under retriever/models/ a packaged one, else the id/path."""
    model = settings.retrieval.reranker.model if model is None else model
    if model != "default":
        packaged = PACKAGED_MODELS / model
        if "/" not in model and (packaged / ADAPTER_CONFIG).is_file():
            return str(packaged)
        return model
    for candidate in (settings.cache_path / "reranker", PACKAGED_RERANKER):
        if (candidate / ADAPTER_CONFIG).is_file():
            return str(candidate)
    raise ModelUnavailable(
        "no trained reranker: none is packaged and none is in the cache",
        hint="train it with `openscholar train reranker` (about 10 minutes on CPU), or set "
        "retrieval.reranker.model to an HF cross-encoder id or directory",
    )


def reranker_paths(settings: Settings) -> list[str]:
    """``retrieval.reranker.model`` and its ``extra_models``, resolved (`reranker_path`)."""
    cfg = settings.retrieval.reranker
    return [reranker_path(settings, m) for m in [cfg.model, *cfg.extra_models]]


def build_retriever(
    settings: Settings,
    datastore: Datastore | str | Path | None = None,
    pipeline: str | None = None,
    embedder: Embedder | None = None,
) -> Retriever:
    """The `Retriever` of ``pipeline`` (default ``retrieval.pipeline``) over ``datastore``."""
    name = pipeline or settings.retrieval.pipeline
    if name not in PIPELINES:
        raise ConfigError(f"unknown retrieval pipeline {name!r}", hint=f"use one of: {', '.join(PIPELINES)}")
    uses_dense, sparse_backend, reranks = PIPELINES[name]
    if not isinstance(datastore, Datastore):
        from openscholar.components import open_datastore

        datastore = open_datastore(settings, datastore)
    cfg = settings.retrieval
    dense = DenseRetriever(datastore, build_query_encoder(settings, name, embedder)) if uses_dense else None
    sparse = None
    if sparse_backend is not None:
        backend = cfg.sparse.backend if sparse_backend == "config" else sparse_backend
        sparse = open_sparse(datastore, cfg.sparse, backend=backend)
    reranker = CrossEncoderReranker(cfg.reranker, reranker_paths(settings)) if reranks else None
    return Retriever(cfg, dense=dense, sparse=sparse, reranker=reranker, fusion=Fusion(cfg.fusion), pipeline=name)
