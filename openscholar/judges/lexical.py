"""A model-free judge: share of the statement's content words found in the passage.

Weak, but needs nothing loaded; used for fast tests of the flow and as the baseline every judge
is measured against (bench/faithfulness.py). It cannot see a negation, so it never says
``contradicts``: its ``supports`` is the word overlap and ``neither`` the rest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from openscholar.judges.protocol import Judgement, support_scores

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    ["a", "an", "the", "of", "in", "on", "and", "or", "to", "is", "are", "was", "were", "be", "been", "for", "with", "by", "as", "at", "from", "that", "this", "these", "those", "it", "its", "which", "can", "may", "not", "no", "than", "their", "there", "has", "have", "had", "also", "such", "into", "more", "most"]
)


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def overlap(statement: str, passage: str) -> float:
    """Share of ``statement``'s content words that occur in ``passage`` (0 when it has none)."""
    words = content_words(statement)
    return len(words & content_words(passage)) / len(words) if words else 0.0


class LexicalJudge:
    name = "lexical"
    threshold = 0.5

    @classmethod
    def from_config(cls, config: object = None, **_: object) -> LexicalJudge:
        """Nothing to configure (the uniform constructor of every judge)."""
        return cls()

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        out = []
        for statement, passage in pairs:
            s = overlap(statement, passage)
            out.append(Judgement(supports=s, contradicts=0.0, neither=1.0 - s))
        return out

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return support_scores(self.judge(pairs))
