"""The Engine: everything one process needs to answer questions, loaded lazily once.

The CLI, the API and the workers all hold one ``Engine``; its parts (embedder, datastore,
retriever, LLM, support judge) are built on first use or by ``warm_up()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from openscholar.answer import Answer
from openscholar.llm import LLM, build_llm
from openscholar.settings import Settings
from retriever.protocols import Hit

EventSink = Callable[[dict[str, Any]], None]
CancelCheck = Callable[[], bool]


class AnswerOptions(BaseModel):
    """Per-request choices; None means "as configured in settings"."""

    feedback: bool = Field(True, description="Run the self-feedback loop.")
    verify: bool = Field(True, description="Verify citations with the support judge.")
    top_k: int | None = Field(None, ge=1, le=100, description="Passages shown to the model.")
    pipeline: str | None = Field(None, description="Retrieval pipeline name (settings.retrieval.pipeline if None).")
    passages: list[dict[str, Any]] | None = Field(
        None,
        description="Caller-supplied passages (title, text, optional paper_id, url, year); when given, no retrieval.",
    )
    task: Literal["long_form", "claim", "yes_no"] = Field("long_form", description="Answer format.")
    mode: Literal["evidence", "synthesis", "auto"] | None = Field(
        None, description="Answer mode (pipeline.mode if None): evidence (quotes), synthesis (LLM) or auto."
    )
    max_tokens: int | None = Field(None, ge=1, description="Completion budget per LLM call.")


class Engine:
    """Lazily-built components plus ``search`` and ``answer``; safe to share between threads."""

    def __init__(self, settings: Settings, *, llm: LLM | None = None) -> None:
        self.settings = settings
        self._llm = llm
        self._lock = threading.RLock()
        self._embedder: Any = None
        self._datastore: Any = None
        self._retrievers: dict[str, Any] = {}
        self._judge: Any = None
        self._quote_scorer: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, *, llm: LLM | None = None) -> Engine:
        return cls(settings, llm=llm)

    def with_llm(self, llm: LLM) -> Engine:
        """An engine answering with ``llm`` that shares this one's loaded components."""
        other = Engine(self.settings, llm=llm)
        with self._lock:
            other._embedder, other._datastore = self._embedder, self._datastore
            other._retrievers, other._judge = self._retrievers, self._judge
            other._quote_scorer = self._quote_scorer
        return other

    # -- components ---------------------------------------------------------------------
    @property
    def embedder(self) -> Any:
        with self._lock:
            if self._embedder is None:
                from openscholar.components import build_embedder

                self._embedder = build_embedder(self.settings)
            return self._embedder

    @property
    def datastore(self) -> Any:
        with self._lock:
            if self._datastore is None:
                from openscholar.components import open_datastore

                self._datastore = open_datastore(self.settings)
            return self._datastore

    def retriever(self, pipeline: str | None = None) -> Any:
        """The retriever for ``pipeline`` (default: settings.retrieval.pipeline), built once."""
        name = pipeline or self.settings.retrieval.pipeline
        with self._lock:
            if name not in self._retrievers:
                self._retrievers[name] = _build_retriever(self, name)
            return self._retrievers[name]

    @property
    def llm(self) -> LLM:
        with self._lock:
            if self._llm is None:
                self._llm = build_llm(self.settings.llm)
            return self._llm

    @property
    def judge(self) -> Any:
        with self._lock:
            if self._judge is None:
                from openscholar.judges import build_judge

                self._judge = build_judge(self.settings, llm=lambda: self.llm)
            return self._judge

    @property
    def quote_scorer(self) -> Any:
        """The (question, sentence) cross-encoder of evidence mode (evidence.scorer)."""
        with self._lock:
            if self._quote_scorer is None:
                from openscholar.evidence import build_quote_scorer

                self._quote_scorer = build_quote_scorer(self.settings)
            return self._quote_scorer

    def warm_up(self) -> None:
        """Load every model and open the datastore now rather than on the first request."""
        for part in (self.embedder, self.retriever(), self.llm, self.judge if self.settings.citations.verify else None):
            warm = getattr(part, "warm_up", None)
            if callable(warm):
                warm()

    # -- operations ---------------------------------------------------------------------
    def search(self, query: str, k: int = 10, pipeline: str | None = None) -> list[Hit]:
        """Ranked passages for ``query``."""
        return list(self.retriever(pipeline).retrieve(query, k).hits)

    def answer(
        self,
        question: str,
        options: AnswerOptions | None = None,
        on_event: EventSink | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> Answer:
        """A checked answer to ``question``; ``on_event`` sees each step start and finish."""
        from openscholar.pipeline import run_pipeline

        return run_pipeline(self, question, options or AnswerOptions(), on_event=on_event, should_cancel=should_cancel)


def _build_retriever(engine: Engine, pipeline: str) -> Any:
    from openscholar.retrieval import build_retriever

    return build_retriever(engine.settings, engine.datastore, pipeline, embedder=engine.embedder)
