"""Fixtures of the answer tests: settings over the small real datastore, engines with chosen LLMs."""

from __future__ import annotations

from pathlib import Path

import pytest

from openscholar.settings import Settings


@pytest.fixture(scope="session")
def answer_settings(small_datastore: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Dense retrieval over the small SciFact datastore, lexical judge (no model), scripted LLM, synthesis mode."""
    return Settings(
        cache_dir=tmp_path_factory.mktemp("answer-cache"),
        datastore={"path": small_datastore},
        retrieval={"pipeline": "dense", "top_k": 5},
        llm={"backend": "scripted"},
        answer={"mode": "synthesis"},  # the loop's control flow; evidence mode has its own tests
        citations={"judge": "lexical", "threshold": 0.5},
    )


@pytest.fixture(scope="session")
def shared_engine(answer_settings: Settings, embedder):
    """One engine (embedder, datastore, retriever loaded once) reused with per-test LLMs."""
    from openscholar.engine import Engine

    engine = Engine.from_settings(answer_settings)
    engine._embedder = embedder  # the session's packaged MiniLM, already loaded
    return engine
