"""The replaceable parts of retrieval, as protocols with the shared dataclasses in their signatures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from datastore.models import Passage, PassageData


@dataclass(slots=True)
class Hit:
    """A retrieved passage with its final score and its score at every stage it passed."""

    passage: Passage
    score: float
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The passage's `PassageData` fields plus the scores (the API's hit shape)."""
        return {
            **PassageData.fields_of(self.passage),
            "score": float(self.score),
            "scores": {k: float(v) for k, v in self.scores.items()},
        }


@dataclass(slots=True)
class Scored:
    """A first-stage or fused result before its passage is read: the passage id, its score, and its
    score at every stage so far. The pipeline ranks, fuses and cuts these, and reads from the
    passage store only the passages it returns (at 10M passages each read is a random SQLite page)."""

    passage_id: int
    score: float
    scores: dict[str, float] = field(default_factory=dict)


def scored(pairs: Sequence[tuple[int, float]], stage: str) -> list[Scored]:
    """``(id, score)`` pairs of one stage, best first, as `Scored`."""
    return [Scored(int(i), float(s), {stage: float(s)}) for i, s in pairs]


def fetch_hits(datastore: Any, ranked: Sequence[Scored]) -> list[Hit]:
    """The hits of ``ranked`` in that order, with their passages read from ``datastore`` in one call;
    ids with no live passage (deleted since the index was searched) are left out."""
    passages = {p.passage_id: p for p in datastore.get([r.passage_id for r in ranked])}
    return [Hit(passages[r.passage_id], r.score, r.scores) for r in ranked if r.passage_id in passages]


@dataclass(frozen=True, slots=True)
class Routing:
    """What a routing query encoder decided for one query: the expert that encoded it and why.

    ``rule`` is the rule that chose (``head``: the trained routing head; ``pilots``: similarity to
    each expert's pilot queries); ``similarities`` are the pilot similarities per expert and ``head``
    the routing head's probabilities per expert (None when routing by pilots).
    """

    expert: str
    rule: str
    similarities: dict[str, float] = field(default_factory=dict)
    head: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"expert": self.expert, "rule": self.rule, "similarities": dict(self.similarities)}
        if self.head is not None:
            out["head"] = dict(self.head)
        return out


@dataclass(slots=True)
class QueryVectors:
    """Encoded queries plus, per query, the routing decision of a routing encoder (None otherwise)."""

    vectors: np.ndarray
    routing: list[Routing] | None = None


@runtime_checkable
class Embedder(Protocol):
    """Turns passages into vectors; the passage side of every datastore."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

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

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode_queries(self, texts: Sequence[str]) -> QueryVectors: ...
