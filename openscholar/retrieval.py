"""Wiring of the retrieval pipelines from settings: query encoder, first stages, fusion, reranker.

A pipeline is a `RetrievalRecipe` (retriever/recipe.py), resolved once from settings
(``retrieval.pipeline`` names a preset, ``retrieval.recipe`` gives one of your own): the dense
stage uses the base embedder or the router's query encoder (`build_query_encoder`), the sparse
stage the named backend, and the reranker scores the fused candidates when the recipe says so.
"""

from __future__ import annotations

from pathlib import Path

from datastore.datastore import Datastore
from openscholar.settings import Settings
from retriever.dense import DenseRetriever
from retriever.errors import ModelUnavailable
from retriever.facade import Retriever
from retriever.fusion import Fusion
from retriever.protocols import Embedder, QueryEncoder
from retriever.recipe import RetrievalRecipe, resolve
from retriever.reranker import ADAPTER_CONFIG, CrossEncoderReranker
from retriever.sparse import open_sparse

# The rerankers trained here and committed with the package (see docs/retrieval_report.md).
PACKAGED_MODELS = Path(__file__).resolve().parents[1] / "retriever" / "models"
PACKAGED_RERANKER = PACKAGED_MODELS / "reranker"


def resolve_recipe(settings: Settings, pipeline: str | RetrievalRecipe | None = None) -> RetrievalRecipe:
    """The concrete recipe of ``pipeline`` (preset name or recipe; None: the configured one)."""
    return resolve(settings.retrieval, pipeline)


def build_query_encoder(
    settings: Settings, pipeline: str | RetrievalRecipe | None = None, embedder: Embedder | None = None
) -> QueryEncoder:
    """The query encoder of ``pipeline``: the router's for router recipes, else the base embedder."""
    if resolve_recipe(settings, pipeline).uses_router:
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
    pipeline: str | RetrievalRecipe | None = None,
    embedder: Embedder | None = None,
) -> Retriever:
    """The `Retriever` of ``pipeline`` (a preset name or a recipe; default: the configured one) over ``datastore``."""
    recipe = resolve_recipe(settings, pipeline)
    if not isinstance(datastore, Datastore):
        from openscholar.components import open_datastore

        datastore = open_datastore(settings, datastore)
    cfg = settings.retrieval
    dense = DenseRetriever(datastore, build_query_encoder(settings, recipe, embedder)) if recipe.dense != "none" else None
    sparse = open_sparse(datastore, cfg.sparse, backend=recipe.sparse) if recipe.sparse != "none" else None
    reranker = CrossEncoderReranker(cfg.reranker, reranker_paths(settings)) if recipe.rerank else None
    return Retriever(cfg, dense=dense, sparse=sparse, reranker=reranker, fusion=Fusion(cfg.fusion), pipeline=recipe.name)
