"""Score a predictions file on its task: the metrics the benchmark defines for that subset.

| task | metrics |
|---|---|
| scifact, pubmedqa | accuracy, short-form citation precision/recall, length |
| qasa | ROUGE-L, long-form citation precision/recall, length |
| cs | rubric score (judge LLM), long-form citations, length |
| multi | Prometheus organization/coverage/relevance (judge LLM), long-form citations, length |
| bio, neuro | long-form citations, length |

Gold fields a predictions file lacks (``answer``, the CS rubric) are joined from the task's data by
``input``. Every result names the judges that produced it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.judges import judge_id
from eval.scholarqabench.accuracy import score_accuracy
from eval.scholarqabench.citations import Entailment, score_citations
from eval.scholarqabench.length import score_length
from eval.scholarqabench.loaders import (
    BenchmarkDataError,
    Example,
    TaskSpec,
    load_prometheus_rubrics,
)
from eval.scholarqabench.text import sentence_splitter_name


def join_gold(items: Sequence[dict[str, Any]], examples: Sequence[Example] | None, spec: TaskSpec) -> list[dict[str, Any]]:
    """Items with ``answer`` / ``rubric`` filled from ``examples`` (matched by input) where missing."""
    by_input = {ex.input: ex for ex in examples or []}
    out = []
    for item in items:
        item = dict(item)
        ex = by_input.get(item["input"])
        if ex is not None:
            if item.get("answer") is None and ex.answer is not None:
                item["answer"] = ex.answer
            if spec.name == "cs" and item.get("rubric") is None:
                item["rubric"] = ex.rubric
        out.append(item)
    return out


def _need(items: Sequence[dict[str, Any]], key: str, metric: str) -> None:
    missing = sum(1 for it in items if it.get(key) is None)
    if missing:
        raise BenchmarkDataError(
            f"{missing} of {len(items)} predictions have no gold {key!r}, which {metric} needs",
            hint="keep the gold field in the predictions or pass the task's data with --data so it can be joined",
        )


def score_predictions(spec: TaskSpec, items: Sequence[dict[str, Any]], *, judge: Any = None,
                      judge_llm: Any = None, examples: Sequence[Example] | None = None,
                      prometheus_rubrics: str | Path | None = None, threshold: float | None = None,
                      progress: bool = False, with_items: bool = False) -> dict[str, Any]:
    """The task's metrics over ``items``; ``judge`` (a SupportJudge) scores citations, ``judge_llm``
    (an LLM) the rubric and Prometheus metrics (skipped, and said so, when None)."""
    started = time.perf_counter()
    items = join_gold(items, examples, spec)
    result: dict[str, Any] = {"task": spec.name, "n": len(items), "sentence_splitter": sentence_splitter_name()}
    judges: dict[str, str] = {}
    notes: list[str] = []
    per_item: dict[str, Any] = {}
    for metric in spec.metrics:
        if metric == "accuracy":
            _need(items, "answer", "accuracy")
            acc = score_accuracy(items)
            result["accuracy"] = acc["accuracy"]
            per_item["accuracy"] = acc["accuracy_all"]
        elif metric == "length":
            result.update(score_length(items))
        elif metric == "rouge":
            from eval.scholarqabench.rouge import score_rouge

            _need(items, "answer", "ROUGE-L")
            r = score_rouge(items)
            result["rougeL"] = r["rougeL"]
            per_item["rougeL"] = r["rougeL_all"]
        elif metric in ("citations_short", "citations_long"):
            if judge is None:
                notes.append("citation precision/recall not computed: no attribution judge")
                continue
            entails = Entailment(judge, threshold)
            c = score_citations(items, entails, short=metric == "citations_short", progress=progress)
            result.update({k: v for k, v in c.items() if not k.endswith("_all")})
            per_item["citation_recall"] = c["citation_recall_all"]
            per_item["citation_precision"] = c["citation_precision_all"]
            judges["attribution"] = judge_id(judge)
            result["citation_scoring"] = "short-form" if metric == "citations_short" else "long-form"
        elif metric == "rubric":
            if judge_llm is None:
                notes.append("rubric score not computed: no judge LLM")
                continue
            from eval.scholarqabench.rubric import score_rubrics

            _need(items, "rubric", "the rubric score")
            r = score_rubrics(items, judge_llm, progress=progress)
            result.update({k: v for k, v in r.items() if not k.endswith("_all")})
            judges["rubric"] = str(getattr(judge_llm, "model_id", type(judge_llm).__name__))
        elif metric == "prometheus":
            if judge_llm is None or prometheus_rubrics is None:
                notes.append("Prometheus scores not computed: no judge LLM or no rubric file")
                continue
            from eval.scholarqabench.prometheus import score_prometheus

            rubrics = load_prometheus_rubrics(prometheus_rubrics)
            result.update(score_prometheus(items, judge_llm, rubrics, progress=progress))
            judges["prometheus"] = str(getattr(judge_llm, "model_id", type(judge_llm).__name__))
    result["judges"] = judges
    if notes:
        result["notes"] = notes
    result["scoring_s"] = round(time.perf_counter() - started, 2)
    if with_items:
        result["items"] = per_item
    return result
