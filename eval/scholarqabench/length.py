"""Output length as ScholarQABench reports it: mean whitespace-separated words, citations stripped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eval.scholarqabench.text import remove_citations


def score_length(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    words = [len(remove_citations(item["output"]).split()) for item in items]
    return {"length": sum(words) / len(words) if words else 0.0}
