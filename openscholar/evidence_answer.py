"""The ``evidence`` answer mode: the selected quotes, in themed sections, and a verdict where asked.

No LLM writes anything: the answer is verbatim quotes (each cited), grouped by theme, and for
claims and yes/no questions a first line with the support judge's verdict and the quotes that
decided it. Faithful by construction, and fast on two CPU cores. The text uses the same ``[n]``
citations as a synthesis answer, so markdown, JSON and the page render both alike.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

from openscholar.answer import Evidence, Reference, Section, Sentence, Verdict
from openscholar.evidence import QuoteScorer, TextEmbedder, select_evidence
from openscholar.judges.protocol import SupportJudge
from openscholar.verdict import decide, is_yes_no, short_answer, statement_of

NO_QUOTES = "The passages found contain no sentence that bears on this question."
_VERDICT_WORDS = {"supported": "supports", "contradicted": "contradicts", "not enough evidence": "does not settle"}


@dataclass
class EvidenceResult:
    text: str
    sentences: list[Sentence]
    evidence: list[Evidence]
    sections: list[Section]
    verdict: Verdict | None = None
    cited: list[int] = field(default_factory=list)


def resolve_mode(mode: str, model: str, capable: Sequence[str]) -> str:
    """``evidence`` or ``synthesis``: ``auto`` is synthesis exactly when ``model`` matches a capable pattern."""
    if mode != "auto":
        return mode
    return "synthesis" if any(fnmatch.fnmatch(model.lower(), p.lower()) for p in capable) else "evidence"


def evidence_answer(question: str, task: str, refs: Sequence[Reference], *, scorer: QuoteScorer,
                    judge: SupportJudge | None, embedder: TextEmbedder | None = None, quotes: int = 8,
                    per_paper: int = 2, mmr_lambda: float = 0.7, min_score: float | None = None,
                    section_similarity: float = 0.45, threshold: float = 0.5,
                    max_scored: int | None = None, verdict_windows: int | None = None) -> EvidenceResult:
    """Quotes for ``question`` from ``refs``; a verdict for ``task`` claim / yes_no when a judge is given."""
    evidence, sections = select_evidence(question, refs, scorer, k=quotes, per_paper=per_paper, lam=mmr_lambda,
                                         min_score=min_score, embedder=embedder,
                                         section_similarity=section_similarity, max_scored=max_scored)
    by_id = {r.id: r for r in refs}
    verdict = None
    # A long-form question that is a yes/no question ("Does X improve Y?") gets the verdict too.
    verdict_task = task if task != "long_form" else ("yes_no" if is_yes_no(question) else None)
    if verdict_task is not None and judge is not None and evidence:
        statement = question.strip() if verdict_task == "claim" else statement_of(question)
        verdict = decide(statement, evidence, by_id, judge, threshold=threshold, windows=verdict_windows)
    text, sentences = compose(verdict_task or task, evidence, sections, verdict)
    cited = list(dict.fromkeys(e.reference for e in evidence))
    return EvidenceResult(text, sentences, evidence, sections, verdict, cited)


def compose(task: str, evidence: list[Evidence], sections: list[Section],
            verdict: Verdict | None) -> tuple[str, list[Sentence]]:
    """The answer text and its sentences: the verdict line, then a paragraph per section."""
    if not evidence:
        return NO_QUOTES, [Sentence(text=NO_QUOTES, status="unsupported", checked=False)]
    paragraphs: list[str] = []
    sentences: list[Sentence] = []
    if verdict is not None:
        deciding = list(dict.fromkeys(evidence[i].reference for i in verdict.deciding))
        marks = "".join(f"[{r}]" for r in deciding)
        head = short_answer(task, verdict)
        line = (f"{head}. The support judge finds that the evidence {_VERDICT_WORDS[verdict.label]} the statement "
                f"\u201c{verdict.statement.rstrip('.')}\u201d")
        if marks:
            line += f" {marks}."
        elif verdict.supports >= 0.5 and verdict.contradicts >= 0.5:
            line += f" (mixed: supports {verdict.supports:.2f}, contradicts {verdict.contradicts:.2f})."
        else:
            line += f" (weak: supports {verdict.supports:.2f}, contradicts {verdict.contradicts:.2f})."
        paragraphs.append(line)
        sentences.append(Sentence(text=line, citations=deciding, supported=bool(deciding),
                                  status="supported" if deciding else "unsupported", paragraph=0))
    for section in sections:
        p = len(paragraphs)
        body = [f"**{section.title}{'' if section.title.endswith(('.', '?', '!', '…')) else '.'}**"]
        for i in section.evidence:
            e = evidence[i]
            body.append(f"\u201c{e.quote}\u201d [{e.reference}]")
            sentences.append(Sentence(text=e.quote, citations=[e.reference], support={e.reference: 1.0},
                                      supported=True, status="supported", paragraph=p))
        paragraphs.append(" ".join(body))
    return "\n\n".join(paragraphs), sentences
