"""The SupportJudge protocol: how strongly a passage supports a statement, in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class SupportJudge(Protocol):
    """Scores (statement, passage) pairs; 1.0 = the passage supports the statement."""

    name: str

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """One support probability per (statement, passage text) pair, in input order."""
        ...
