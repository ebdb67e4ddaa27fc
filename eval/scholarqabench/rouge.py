"""ROUGE-L against the gold long-form answer (QASA), as the benchmark's ``compute_rouge`` defines it:
citations stripped, lower-cased, one sentence per line, ``rouge_score`` with the Porter stemmer.

The benchmark's script guards this with ``"answer" in normalized_data`` (a test on the list of
items, always false), so its ROUGE-L is never computed; here it is. The benchmark aggregates with a
bootstrap (``mid.fmeasure``); we report the plain mean of per-item F-measures (deterministic; the
bootstrap median of the mean differs from it only by resampling noise). Percent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eval.scholarqabench.text import remove_citations, split_sentences


def _prepare(text: str) -> str:
    return "\n".join(split_sentences(text.lower()))


def score_rouge(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``rougeL`` (percent) over items with ``output`` and a gold ``answer`` (long form)."""
    try:
        from rouge_score import rouge_scorer
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("ROUGE-L needs rouge-score: pip install rouge-score") from exc
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = []
    for item in items:
        answer = item.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError("ROUGE-L needs a gold long-form `answer` in every item")
        hyp = _prepare(remove_citations(item["output"]))
        ref = _prepare(remove_citations(answer))
        scores.append(scorer.score(ref, hyp)["rougeL"].fmeasure)
    return {"rougeL": 100.0 * sum(scores) / len(scores) if scores else 0.0, "rougeL_all": scores}
