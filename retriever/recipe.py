"""Retrieval recipes: what a retrieval pipeline is made of, resolved once from settings.

A recipe names its dense query encoder (none | base | router), its sparse backend
(none | bm25s | lucene) and whether the cross-encoder reranks. Today's pipeline names are presets
(`PRESETS`); a settings file may give a recipe of its own (``retrieval.recipe``). A "configured"
sparse stage resolves to ``retrieval.sparse.backend`` when the recipe is resolved, so every
component downstream sees concrete choices.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import ConfigDict, Field, model_validator

from datastore.strict import StrictModel
from retriever.config import (
    DenseEncoder,
    PipelineName,
    RecipeConfig,
    RetrievalConfig,
    SparseBackend,
)
from retriever.errors import RetrieverError

# preset name -> (dense encoder, sparse backend or "configured" / "none", rerank)
PRESETS: dict[str, RecipeConfig] = {
    "dense": RecipeConfig(dense="base", sparse="none"),
    "bm25": RecipeConfig(dense="none", sparse="bm25s"),
    "bm25-lucene": RecipeConfig(dense="none", sparse="lucene"),
    "hybrid": RecipeConfig(dense="base", sparse="configured"),
    "hybrid+rerank": RecipeConfig(dense="base", sparse="configured", rerank=True),
    "router": RecipeConfig(dense="router", sparse="none"),
    "router+hybrid": RecipeConfig(dense="router", sparse="configured"),
    "router+hybrid+rerank": RecipeConfig(dense="router", sparse="configured", rerank=True),
}
if set(PRESETS) != set(get_args(PipelineName)):  # pragma: no cover - a preset added to one list only
    raise AssertionError(f"retrieval presets {sorted(PRESETS)} != PipelineName {sorted(get_args(PipelineName))}")


class RetrievalRecipe(StrictModel):
    """A resolved recipe: concrete stages, hashable (one retriever is built per recipe)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="The preset's name, or 'custom'.")
    dense: DenseEncoder
    sparse: SparseBackend | Literal["none"]
    rerank: bool = False

    @model_validator(mode="after")
    def _has_a_first_stage(self) -> RetrievalRecipe:
        if self.dense == "none" and self.sparse == "none":
            raise ValueError("a retrieval recipe needs a dense or a sparse first stage")
        return self

    @property
    def uses_router(self) -> bool:
        return self.dense == "router"


def resolve(config: RetrievalConfig, pipeline: str | RetrievalRecipe | None = None) -> RetrievalRecipe:
    """The concrete recipe of ``pipeline`` (a preset name or a recipe), else of the settings."""
    if isinstance(pipeline, RetrievalRecipe):
        return pipeline
    if pipeline is None and config.recipe is not None:
        return _concrete("custom", config.recipe, config)
    name = pipeline or config.pipeline
    preset = PRESETS.get(name)
    if preset is None:
        raise RetrieverError(f"unknown retrieval pipeline {name!r}", hint=f"use one of: {', '.join(PRESETS)}")
    return _concrete(name, preset, config)


def _concrete(name: str, recipe: RecipeConfig, config: RetrievalConfig) -> RetrievalRecipe:
    sparse = config.sparse.backend if recipe.sparse == "configured" else recipe.sparse
    return RetrievalRecipe(name=name, dense=recipe.dense, sparse=sparse, rerank=recipe.rerank)
