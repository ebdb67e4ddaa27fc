"""A deterministic attribution judge for hand-computed scorer fixtures.

Statements and passages carry fact tokens (F1, F2, ...); a passage supports a statement when it
holds every fact token of the statement. A judge is a pluggable component, so this rule-based one
exercises exactly the code paths a trained judge would, with outcomes we can compute by hand.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_FACT = re.compile(r"\bF\d+\b")


class FactTokenJudge:
    name = "fact-token-rule"

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        out = []
        for statement, passage in pairs:
            self.pairs.append((statement, passage))
            need = set(_FACT.findall(statement))
            out.append(1.0 if need and need <= set(_FACT.findall(passage)) else 0.0)
        return out
