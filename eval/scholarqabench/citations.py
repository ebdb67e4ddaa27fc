"""Citation precision and recall as ScholarQABench defines them (ALCE-style AutoAIS).

Long form (``citations_long``; QASA, ScholarQA-CS/Multi/Bio/Neuro), per output:

- split into sentences; a sentence under 50 characters (citations included) is skipped;
- a sentence's citations are the ``[n`` markers in it (0-based into ``ctxs``); a sentence with
  none inherits the previous scored sentence's citations;
- a citation out of range makes the sentence unsupported;
- at most 3 citations per sentence are used;
- recall: the concatenation of the cited passages entails the sentence (citations stripped);
  per output, supported sentences / scored sentences;
- precision: for a supported sentence with several citations, a citation is irrelevant when it
  alone does not entail the sentence and the others without it still do (leave-one-out); with one
  citation it counts when the sentence is supported; per output, relevant / total citations.

Short form (``citations_short``; SciFact, PubMedQA): the whole output is one statement,
``input + " " + output``, with no length filter and no inheritance; the rest is the same.

Outputs with no sentences at all are left out of the long-form means, as the benchmark does
(counted in ``citation_skipped``). Scores are percentages (0-100), as the benchmark reports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eval.scholarqabench.text import (
    find_citations,
    format_document,
    remove_citations,
    split_sentences,
)

MIN_SENTENCE_CHARS = 50
AT_MOST_CITATIONS = 3


class Entailment:
    """``entails(passage, claim)`` from any SupportJudge (score >= threshold), cached per pair."""

    def __init__(self, judge: Any, threshold: float | None = None) -> None:
        self.judge = judge
        self.threshold = threshold if threshold is not None else float(getattr(judge, "threshold", 0.5))
        self.calls = 0
        self._cache: dict[tuple[str, str], bool] = {}

    def __call__(self, passage: str, claim: str) -> bool:
        key = (claim, passage)
        if key not in self._cache:
            self.calls += 1
            score = float(self.judge.score([(claim, passage)])[0])
            self._cache[key] = score >= self.threshold
        return self._cache[key]


@dataclass
class ItemCitationScore:
    recall: float
    precision: float
    sentences: int
    citations: int
    detail: list[dict[str, Any]] = field(default_factory=list)


def _joint(docs: Sequence[dict[str, Any]], ids: Sequence[int]) -> str:
    return "\n".join(format_document(docs[i]) for i in ids if i >= 0)


def _score_statement(
    statement: str, target: str, ref: list[int], docs: Sequence[dict[str, Any]], entails: Entailment,
    at_most_citations: int,
) -> tuple[int, int, int, dict[str, Any]]:
    """(entailed 0/1, relevant citations, citations counted, detail) for one statement whose
    citation list ``ref`` is resolved (inherited where applicable) but not yet truncated: the
    benchmark checks the range on the whole list, then keeps the first ``at_most_citations``."""
    if not ref or any(r >= len(docs) for r in ref):
        return 0, 0, 0, {"sentence": statement, "citations": ref, "supported": False, "counted": 0}
    ref = ref[:at_most_citations]
    joint = int(entails(_joint(docs, ref), target))
    relevant = 0
    irrelevant: list[int] = []
    if joint and len(ref) > 1:
        for r in ref:
            if entails(format_document(docs[r]), target):
                relevant += 1
                continue
            rest = list(ref)
            rest.remove(r)  # the first occurrence, as the benchmark does (repeats stay in)
            if entails(_joint(docs, rest), target):
                irrelevant.append(r)
            else:
                relevant += 1
    else:
        relevant = joint
    detail = {"sentence": statement, "citations": ref, "supported": bool(joint), "irrelevant": irrelevant,
              "counted": len(ref)}
    return joint, relevant, len(ref), detail


def score_item_long(output: str, docs: Sequence[dict[str, Any]], entails: Entailment,
                    at_most_citations: int = AT_MOST_CITATIONS) -> ItemCitationScore | None:
    """Long-form citation recall/precision (fractions) of one output; None when it has no sentences."""
    sents = split_sentences(output)
    if not sents:
        return None
    entail = entail_prec = total_citations = total_sents = 0
    previous: list[int] | None = None
    details = []
    for sent in sents:
        if len(sent) < MIN_SENTENCE_CHARS:
            continue
        total_sents += 1
        target = remove_citations(sent).strip()
        ref = find_citations(sent)
        if not ref and previous is not None:
            ref = previous
        if ref and not any(r >= len(docs) for r in ref):
            previous = ref  # remembered (untruncated) only when in range, as in the benchmark
        joint, relevant, counted, detail = _score_statement(sent, target, ref, docs, entails, at_most_citations)
        entail += joint
        entail_prec += relevant
        total_citations += counted
        details.append(detail)
    return ItemCitationScore(
        recall=entail / total_sents if total_sents else 0.0,
        precision=entail_prec / total_citations if total_citations else 0.0,
        sentences=total_sents,
        citations=total_citations,
        detail=details,
    )


def score_item_short(question: str, output: str, docs: Sequence[dict[str, Any]], entails: Entailment,
                     at_most_citations: int = AT_MOST_CITATIONS) -> ItemCitationScore:
    """Short-form citation recall/precision (fractions): the question plus the output is one statement."""
    statement = question + " " + output
    target = question + " " + remove_citations(output).strip()
    ref = find_citations(statement)
    joint, relevant, counted, detail = _score_statement(statement, target, ref, docs, entails, at_most_citations)
    return ItemCitationScore(
        recall=float(joint),
        precision=relevant / counted if counted else 0.0,
        sentences=1,
        citations=counted,
        detail=[detail],
    )


def score_citations(items: Sequence[dict[str, Any]], entails: Entailment, *, short: bool,
                    at_most_citations: int = AT_MOST_CITATIONS, progress: bool = False) -> dict[str, Any]:
    """Mean citation precision/recall (percent) over prediction items (``input``, ``output``, ``ctxs``)."""
    from tqdm import tqdm

    recalls: list[float] = []
    precisions: list[float] = []
    skipped = 0
    for item in tqdm(items, desc="citations", disable=not progress):
        docs = item.get("ctxs") or []
        if short:
            s: ItemCitationScore | None = score_item_short(item.get("input", ""), item["output"], docs, entails,
                                                           at_most_citations)
        else:
            s = score_item_long(item["output"], docs, entails, at_most_citations)
        if s is None:
            skipped += 1
            continue
        recalls.append(s.recall)
        precisions.append(s.precision)
    n = len(recalls)
    return {
        "citation_recall": 100.0 * sum(recalls) / n if n else 0.0,
        "citation_precision": 100.0 * sum(precisions) / n if n else 0.0,
        "citation_n": n,
        "citation_skipped": skipped,
        "citation_recall_all": recalls,
        "citation_precision_all": precisions,
        "judge_calls": entails.calls,
    }
