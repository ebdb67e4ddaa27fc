"""The replaceable parts of retrieval, as protocols with the shared dataclasses in their signatures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from datastore.models import Passage


@dataclass(slots=True)
class Hit:
    """A retrieved passage with its final score and its score at every stage it passed."""

    passage: Passage
    score: float
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        p = self.passage
        return {
            "passage_id": p.passage_id,
            "paper_id": p.paper_id,
            "title": p.title,
            "text": p.text,
            "year": p.year,
            "venue": p.venue,
            "authors": list(p.authors),
            "url": p.url,
            "citation_count": p.citation_count,
            "score": float(self.score),
            "scores": {k: float(v) for k, v in self.scores.items()},
        }


@dataclass(slots=True)
class QueryVectors:
    """Encoded queries plus, per query, what the encoder decided (e.g. the router's expert)."""

    vectors: np.ndarray
    details: list[dict[str, Any]] | None = None


@runtime_checkable
class Embedder(Protocol):
    """Turns passages into vectors; the passage side of every datastore."""

    model_id: str
    dim: int
    max_tokens: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Passage vectors, float32, (len(texts), dim), normalized when configured."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text costs the encoder, special tokens excluded."""
        ...


@runtime_checkable
class QueryEncoder(Protocol):
    """Turns queries into vectors comparable with an embedder's passage vectors.

    ``model_id``/``dim`` name the passage space it searches (checked against the datastore).
    """

    model_id: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> QueryVectors: ...
