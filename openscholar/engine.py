"""The Engine: everything one process needs to answer questions, loaded lazily once.

The CLI, the API and the workers all hold one ``Engine``; its parts (embedder, datastore,
retrievers, LLM, support judge) are built on first use or by ``warm_up()``, each typed by its
protocol. ``answer`` hands the answer loop exactly the parts it uses (`AnswerParts`).
"""

from __future__ import annotations

import threading

from datastore.datastore import Datastore
from openscholar.answer import Answer
from openscholar.answering import AnswerParts, AnswerSettings, CancelCheck, EventSink, run_answer
from openscholar.components import build_embedder, open_datastore
from openscholar.judges import SupportJudge, build_judge
from openscholar.llm import LLM, build_llm
from openscholar.options import AnswerOptions
from openscholar.retrieval import build_retriever, resolve_recipe
from openscholar.settings import Settings
from retriever.facade import Retriever
from retriever.protocols import Embedder, Hit
from retriever.recipe import RetrievalRecipe

__all__ = ["AnswerOptions", "Engine"]


class Engine:
    """Lazily-built components plus ``search`` and ``answer``; safe to share between threads."""

    def __init__(self, settings: Settings, *, llm: LLM | None = None) -> None:
        self.settings = settings
        self._llm = llm
        self._lock = threading.RLock()
        self._embedder: Embedder | None = None
        self._datastore: Datastore | None = None
        self._retrievers: dict[RetrievalRecipe, Retriever] = {}
        self._judge: SupportJudge | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, llm: LLM | None = None) -> Engine:
        return cls(settings, llm=llm)

    def with_llm(self, llm: LLM) -> Engine:
        """An engine answering with ``llm`` that shares this one's loaded components."""
        other = Engine(self.settings, llm=llm)
        with self._lock:
            other._embedder, other._datastore = self._embedder, self._datastore
            other._retrievers, other._judge = self._retrievers, self._judge
        return other

    # -- components ---------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = build_embedder(self.settings)
            return self._embedder

    @property
    def datastore(self) -> Datastore:
        with self._lock:
            if self._datastore is None:
                self._datastore = open_datastore(self.settings)
            return self._datastore

    def retriever(self, pipeline: str | RetrievalRecipe | None = None) -> Retriever:
        """The retriever of ``pipeline`` (a preset name or a recipe; default: the configured one), built once."""
        recipe = resolve_recipe(self.settings, pipeline)
        with self._lock:
            if recipe not in self._retrievers:
                self._retrievers[recipe] = build_retriever(self.settings, self.datastore, recipe, embedder=self.embedder)
            return self._retrievers[recipe]

    @property
    def llm(self) -> LLM:
        with self._lock:
            if self._llm is None:
                self._llm = build_llm(self.settings.llm)
            return self._llm

    @property
    def judge(self) -> SupportJudge:
        with self._lock:
            if self._judge is None:
                self._judge = build_judge(self.settings.citations, llm=lambda: self.llm,
                                          cache_dir=self.settings.cache_path)
            return self._judge

    def warm_up(self) -> None:
        """Load every model and open the datastore now rather than on the first request."""
        parts: list[object] = [self.embedder, self.retriever(), self.llm]
        if self.settings.citations.verify:
            parts.append(self.judge)
        for part in parts:
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
        options = options or AnswerOptions()
        verify = options.verify and self.settings.citations.verify
        parts = AnswerParts(
            llm=self.llm,
            retriever=None if options.passages is not None else self.retriever(options.pipeline),
            judge=self.judge if verify else None,
        )
        return run_answer(question, options, parts, AnswerSettings.of(self.settings),
                          on_event=on_event, should_cancel=should_cancel)
