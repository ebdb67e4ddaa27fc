"""A model-free judge: share of the statement's content words found in the passage.

Weak, but needs nothing loaded; used when no trained judge exists and for fast tests of the flow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an the of in on and or to is are was were be been for with by as at from that this these those it its "
    "which can may not no than their there has have had also such into more most".split()
)


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


class LexicalJudge:
    name = "lexical"

    @classmethod
    def from_config(cls, config: object = None, **_: object) -> LexicalJudge:
        """Nothing to configure (the uniform constructor of every judge)."""
        return cls()

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        out = []
        for statement, passage in pairs:
            words = content_words(statement)
            out.append(len(words & content_words(passage)) / len(words) if words else 0.0)
        return out
