"""Retrieval recipes: the presets are named recipes, resolved once (the configured sparse backend
filled in), custom recipes come from settings, and a recipe without a first stage is refused."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from retriever.config import PipelineName, RetrievalConfig
from retriever.errors import RetrieverError
from retriever.recipe import PRESETS, RetrievalRecipe, resolve


def test_every_preset_name_is_a_recipe() -> None:
    assert set(PRESETS) == set(get_args(PipelineName))
    cfg = RetrievalConfig()
    table = {name: (r.dense, r.sparse, r.rerank) for name in PRESETS for r in [resolve(cfg, name)]}
    # The configured sparse backend defaults to auto (bm25s or Lucene by the datastore's size).
    assert table == {
        "dense": ("base", "none", False),
        "bm25": ("none", "bm25s", False),
        "bm25-lucene": ("none", "lucene", False),
        "hybrid": ("base", "auto", False),
        "hybrid+rerank": ("base", "auto", True),
        "router": ("router", "none", False),
        "router+hybrid": ("router", "auto", False),
        "router+hybrid+rerank": ("router", "auto", True),
    }


def test_configured_sparse_and_the_default_resolve_from_settings() -> None:
    cfg = RetrievalConfig(pipeline="router+hybrid", sparse={"backend": "lucene"})
    recipe = resolve(cfg)
    assert (recipe.name, recipe.dense, recipe.sparse, recipe.uses_router) == ("router+hybrid", "router", "lucene", True)
    assert resolve(cfg, "bm25").sparse == "bm25s"  # a preset that names its backend keeps it
    assert resolve(cfg, recipe) is recipe


def test_custom_recipe_from_settings_wins_over_the_preset() -> None:
    cfg = RetrievalConfig(pipeline="dense", recipe={"dense": "router", "sparse": "none", "rerank": True})
    recipe = resolve(cfg)
    assert (recipe.name, recipe.dense, recipe.sparse, recipe.rerank) == ("custom", "router", "none", True)
    assert resolve(cfg, "dense").dense == "base"  # an explicit preset still resolves to itself


def test_recipes_are_hashable_values_and_need_a_first_stage() -> None:
    a, b = resolve(RetrievalConfig(), "hybrid"), resolve(RetrievalConfig(), "hybrid")
    assert a == b and hash(a) == hash(b) and len({a, b, resolve(RetrievalConfig(), "dense")}) == 2
    with pytest.raises(ValidationError, match="first stage"):
        RetrievalRecipe(name="x", dense="none", sparse="none")
    with pytest.raises(ValidationError):
        RetrievalConfig(recipe={"dense": "splade"})
    with pytest.raises(RetrieverError) as unknown:
        resolve(RetrievalConfig(), "splade")
    assert "router+hybrid+rerank" in unknown.value.hint
