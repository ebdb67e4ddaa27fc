"""Accuracy of the single-paper tasks (SciFact, PubMedQA) as ScholarQABench computes it (``--match``):
an output is correct when the gold label, citations stripped and lower-cased, is a substring of the
output, citations stripped and lower-cased. Percent, as the benchmark reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eval.scholarqabench.text import remove_citations


def is_match(answer: str, output: str) -> bool:
    """The benchmark's string match (so "not true" matches "true": that is the definition)."""
    return remove_citations(answer).lower() in remove_citations(output).lower()


def score_accuracy(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``accuracy`` (percent) over items carrying ``answer`` (gold label) and ``output``."""
    hits = [1.0 if is_match(str(item["answer"]), item["output"]) else 0.0 for item in items]
    return {"accuracy": 100.0 * sum(hits) / len(hits) if hits else 0.0, "accuracy_all": hits}
