"""The SupportJudge protocol: does a passage support a statement, contradict it, or neither?

A judge reads (statement, passage) pairs and returns a `Judgement` per pair: a score in [0, 1]
for each of the three relations. ``score`` is the support score alone (what citation metrics
need). Verification keeps a citation only when ``supports`` passes the threshold, and marks a
sentence contradicted when ``contradicts`` does (see openscholar/citations.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Relation = Literal["supports", "contradicts", "neither"]
RELATIONS: tuple[Relation, ...] = ("supports", "contradicts", "neither")


@dataclass(frozen=True)
class Judgement:
    """Scores of one (statement, passage) pair. For a passage judged window by window, ``supports``
    and ``contradicts`` are each the best window's, so they need not sum to one with ``neither``."""

    supports: float
    contradicts: float
    neither: float

    def relation(self, threshold: float = 0.5) -> Relation:
        """``supports`` or ``contradicts`` when that score passes ``threshold`` (the larger one if
        both do), else ``neither``."""
        best: Relation = "supports" if self.supports >= self.contradicts else "contradicts"
        return best if max(self.supports, self.contradicts) >= threshold else "neither"

    def to_dict(self) -> dict[str, float]:
        return {"supports": round(self.supports, 4), "contradicts": round(self.contradicts, 4),
                "neither": round(self.neither, 4)}


@runtime_checkable
class SupportJudge(Protocol):
    """Judges (statement, passage text) pairs; models load lazily (``warm_up`` or first use)."""

    name: str
    threshold: float  # the support score at which this judge's "supports" is meant to be read

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        """One `Judgement` per pair, in input order."""
        ...

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """The support score of each pair (``judge(pairs)[i].supports``), in input order."""
        ...


def support_threshold(configured: float | None, judge: object | None) -> float:
    """``citations.threshold`` when set, else the judge's own threshold (0.5 when it has none)."""
    if configured is not None:
        return configured
    return float(getattr(judge, "threshold", 0.5))


def support_scores(judgements: Sequence[Judgement]) -> list[float]:
    """``supports`` of each judgement: how every backend implements ``score``."""
    return [j.supports for j in judgements]
