"""The answer loop: retrieve -> initial answer -> self-feedback -> edits -> verified citations.

``run_answer`` takes its parts (`AnswerParts`: the retriever, the LLM, the support judge) and its
settings (`AnswerSettings`), not the engine that holds them. It chains the steps of
`openscholar.answer_steps`, records a trace entry and timing per step, reports each step to
``on_event`` and stops between steps when ``should_cancel()`` says so. Passages are numbered in the
order they come into play: the initial retrieval gets 0..k-1, passages retrieved for feedback
questions are numbered after them, and verification and attribution run over ALL of them.

Every step has a time budget (``answer.budgets``). A step that runs out returns what it has; the
loop then skips the remaining model steps and returns the checked draft, marked ``partial`` with
the step that ran out. Verification always runs, and never shows a citation it could not check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openscholar import prompts
from openscholar.answer import Answer, Edit, FeedbackItem, Reference
from openscholar.answer_steps import (
    Clock,
    InvalidQuestion,
    OutOfTime,
    Run,
    accept_edit,
    edit,
    feedback,
    generate,
    references_from_hits,
    references_from_supplied,
    verdict_of,
)
from openscholar.citations import VerifyClock, cited_ids, verify
from openscholar.config import AnswerConfig, CitationConfig, EvidenceConfig, LLMConfig
from openscholar.evidence import QuoteScorer, TextEmbedder
from openscholar.evidence_answer import evidence_answer, resolve_mode
from openscholar.judges.protocol import SupportJudge, support_threshold
from openscholar.llm.protocol import LLM
from openscholar.options import AnswerOptions
from openscholar.verdict import is_yes_no
from retriever.config import RetrievalConfig
from retriever.facade import Retriever
from retriever.protocols import Hit, Routing

EventSink = Callable[[dict[str, Any]], None]
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class QuoteParts:
    """What evidence mode reads with: the (question, sentence) scorer and the embedder that places
    quotes in themes (None: word overlap)."""

    scorer: QuoteScorer
    embedder: TextEmbedder | None = None


@dataclass(frozen=True)
class AnswerParts:
    """The components one answer uses. ``llm`` is None in evidence mode (nothing is generated);
    ``retriever`` is None when the caller supplies the passages; ``judge`` is None when verification
    is off; ``quotes`` is needed in evidence mode only."""

    llm: LLM | None
    retriever: Retriever | None = None
    judge: SupportJudge | None = None
    quotes: QuoteParts | None = None


@dataclass(frozen=True)
class AnswerSettings:
    """The settings the answer loop reads, as one typed value."""

    answer: AnswerConfig
    citations: CitationConfig
    llm: LLMConfig
    retrieval_top_k: int
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)

    @classmethod
    def of(cls, settings: Any) -> AnswerSettings:
        """From the composed `Settings` (typed as Any: settings sits above this module's imports)."""
        retrieval: RetrievalConfig = settings.retrieval
        return cls(answer=settings.answer, citations=settings.citations, llm=settings.llm, retrieval_top_k=retrieval.top_k,
                   evidence=settings.evidence)

    def mode(self, options: AnswerOptions) -> str:
        """``evidence`` or ``synthesis`` for this request (``auto`` resolved against llm.model)."""
        return resolve_mode(options.mode or self.answer.mode, self.llm.model, self.answer.capable_models)


def run_answer(
    question: str,
    options: AnswerOptions,
    parts: AnswerParts,
    config: AnswerSettings,
    *,
    on_event: EventSink | None = None,
    should_cancel: CancelCheck | None = None,
) -> Answer:
    """Answer ``question`` with ``parts``, following ``options`` over ``config``."""
    cfg = config.answer
    question = question.strip()
    if not question:
        raise InvalidQuestion("the question is empty", hint="ask a question")
    if options.passages is None and parts.retriever is None:
        raise ValueError("run_answer needs a retriever unless the caller supplies the passages")
    t_start = time.perf_counter()
    run = Run(question=question, task=options.task, llm=parts.llm, max_tokens=options.max_tokens or config.llm.max_tokens,
              context_tokens=config.llm.context_tokens, max_passage_words=cfg.max_passage_words,
              clock=Clock(cfg.budgets), on_event=on_event, should_cancel=should_cancel)
    top_k = options.top_k or cfg.top_k or config.retrieval_top_k
    routing: Routing | None = None
    source = "passages" if options.passages is not None else (parts.retriever.pipeline if parts.retriever else "")

    with run.step("retrieve", query=question, k=top_k, pipeline=source) as info:
        if options.passages is not None:
            refs = references_from_supplied(options.passages)
        else:
            assert parts.retriever is not None
            hits, routing = _retrieve(parts.retriever, question, top_k, cfg.min_score)
            refs = references_from_hits(hits, 0, question)
        info["passages"] = len(refs)
        if routing is not None:
            info["routing"] = routing.to_dict()
    run.references = {r.id: r for r in refs}

    mode = config.mode(options)
    answer = Answer(question=question, task=options.task, text="", pipeline=source, mode=mode,  # type: ignore[arg-type]
                    model=getattr(parts.llm, "model_id", "") if mode == "synthesis" else "", routing=routing)
    if not refs:
        answer.text, answer.no_evidence = prompts.NO_EVIDENCE, True
        return _finish(answer, run, t_start)
    if mode == "evidence":
        return _evidence_mode(run, answer, refs, options, parts, config, t_start)
    if parts.llm is None:
        raise ValueError("synthesis mode needs an LLM (AnswerParts.llm)")

    try:
        with run.step("generate", passages=len(refs)) as info:
            text, shown = generate(run, refs)
            info.update(chars=len(text), shown=len(shown), citations=cited_ids(text))
            if run.partial_step == "generate":
                info["out_of_time"] = True
    except OutOfTime as exc:
        # Nothing was written in time: the answer says so, with the passages found.
        run.ran_out(exc.step)
        answer.text, answer.no_evidence = prompts.OUT_OF_TIME, True
        answer.passages = list(run.references.values())
        answer.partial, answer.partial_step = True, run.partial_step
        return _finish(answer, run, t_start)
    in_play = set(shown)

    if options.feedback and cfg.feedback and cfg.max_feedback > 0 and run.partial_step is None:
        text, in_play = _self_feedback(run, parts, options, cfg, answer, text, in_play)

    judge = parts.judge if options.verify and config.citations.verify else None
    text, refs_in_play = _verify(run, answer, judge, config.citations, text, in_play)
    answer.verdict = verdict_of(options.task, answer.text)
    if judge is not None and cfg.refuse_unsupported and answer.sentences and not any(x.supported for x in answer.sentences):
        # Nothing the model wrote is backed by a passage: say so rather than return an invention.
        # A short-form verdict (true/false, yes/no) is kept, flagged as unbacked: it is the answer the
        # caller asked for, and dropping it would turn a judgement into a non-answer.
        v = answer.verdict
        answer.text = prompts.UNSUPPORTED_VERDICT.format(verdict=v.capitalize()) if v else prompts.UNSUPPORTED
        answer.no_evidence = True
        run.trace[-1].detail["refused"] = True
    answer.passages = list(refs_in_play.values())
    # The references: every passage a kept citation or a "contradicted by" mark points to.
    cited = set() if answer.no_evidence else {c for x in answer.sentences for c in [*x.citations, *x.contradicted_by]}
    answer.references = [r for i, r in refs_in_play.items() if i in cited]
    answer.partial, answer.partial_step = run.partial_step is not None, run.partial_step
    return _finish(answer, run, t_start)


def _retrieve(retriever: Retriever, query: str, k: int, min_score: float | None) -> tuple[list[Hit], Routing | None]:
    """Hits for ``query`` (at least ``min_score``), and the query encoder's routing."""
    result = retriever.retrieve(query, k)
    hits = list(result.hits)
    if min_score is not None:
        hits = [h for h in hits if h.score >= min_score]
    return hits, result.routing


def _self_feedback(
    run: Run, parts: AnswerParts, options: AnswerOptions, cfg: AnswerConfig, answer: Answer, text: str, in_play: set[int]
) -> tuple[str, set[int]]:
    """Feedback on the draft, more retrieval for its questions, one edit per item (each within budget)."""
    items: list[FeedbackItem] = []
    try:
        with run.step("feedback") as info:
            items = feedback(run, [run.references[i] for i in sorted(in_play)], text, min(cfg.max_feedback, 3))
            info["items"] = [it.model_dump() for it in items]
        for idx, item in enumerate(items):
            if run.partial_step is not None:
                break
            if item.question and options.passages is None and parts.retriever is not None:
                with run.step("retrieve", query=item.question, k=cfg.feedback_top_k, feedback_index=idx) as info:
                    hits, _ = _retrieve(parts.retriever, item.question, cfg.feedback_top_k, cfg.min_score)
                    known = {r.passage_id for r in run.references.values() if r.passage_id is not None}
                    fresh = [h for h in hits if h.passage.passage_id not in known]
                    new = references_from_hits(fresh, len(run.references), item.question)
                    run.references.update({r.id: r for r in new})
                    item.new_references = [r.id for r in new]
                    info["new_references"] = item.new_references
            with run.step("edit", feedback_index=idx) as info:
                context = [run.references[i] for i in sorted(in_play | set(item.new_references))]
                proposed, shown, cut = edit(run, context, text, item)
                kept, reason = (False, "ran out of its time budget") if cut else accept_edit(
                    text, proposed, cfg.max_shrink, options.task)
                answer.edits.append(Edit(feedback_index=idx, kept=kept, reason=reason, chars_before=len(text),
                                         chars_after=len(proposed), text=proposed))
                info.update(kept=kept, reason=reason, chars_before=len(text), chars_after=len(proposed))
                if kept:
                    text = proposed
                    in_play |= set(shown)
    except OutOfTime as exc:
        run.ran_out(exc.step)
    answer.feedback = items
    return text, in_play


def _verify(
    run: Run, answer: Answer, judge: SupportJudge | None, citations: CitationConfig, text: str, in_play: set[int]
) -> tuple[str, dict[int, Reference]]:
    """Check every citation of ``text`` against the passages in play (within the verify budget)."""
    with run.step("verify", judge=getattr(judge, "name", None), passages=len(in_play)) as info:
        refs_in_play = {i: run.references[i] for i in sorted(in_play)}
        clock = VerifyClock(deadline=time.monotonic() + max(0.0, run.clock.budgets.verify_s))
        checked, sentences = verify(text, refs_in_play, judge, threshold=support_threshold(citations.threshold, judge),
                                    contradiction_threshold=citations.contradiction_threshold,
                                    attribute=citations.attribute, max_citations=citations.max_citations,
                                    candidates=citations.attribution_candidates, clock=clock)
        info.update(verification_counts(sentences, checked=judge is not None))
        if clock.timed_out:
            info["out_of_time"] = True
            run.ran_out("verify")
    answer.judge = getattr(judge, "name", "") if judge is not None else ""
    answer.text, answer.sentences = checked, sentences
    return checked, refs_in_play


def verification_counts(sentences: list[Any], *, checked: bool) -> dict[str, Any]:
    """The verify step's honest counts: supported / unsupported / contradicted sentences, the
    citations removed, and which citations verification added (sentence index -> ids)."""
    judged = [x for x in sentences if x.checked]
    return {"checked": checked, "sentences": len(judged),
            "supported": sum(x.status == "supported" for x in judged),
            "unsupported": sum(x.status == "unsupported" for x in judged),
            "contradicted": sum(x.status == "contradicted" for x in judged),
            "removed": sum(len(x.removed) for x in sentences),
            "attributed": sum(x.attributed for x in sentences),
            "added": {str(i): x.added for i, x in enumerate(sentences) if x.added}}


def _evidence_mode(run: Run, answer: Answer, refs: list[Reference], options: AnswerOptions, parts: AnswerParts,
                   config: AnswerSettings, t_start: float) -> Answer:
    """Evidence mode: quotes in themed sections and, for claims and yes/no questions, the verdict."""
    if parts.quotes is None:
        raise ValueError("evidence mode needs a quote scorer (AnswerParts.quotes)")
    ev = config.evidence
    verifying = options.verify and config.citations.verify and (options.task != "long_form" or is_yes_no(run.question))
    judge = parts.judge if verifying else None
    with run.step("evidence", passages=len(refs), judge=getattr(judge, "name", None)) as info:
        res = evidence_answer(run.question, options.task, refs, scorer=parts.quotes.scorer, judge=judge,
                              embedder=parts.quotes.embedder, quotes=ev.quotes, per_paper=ev.per_paper,
                              mmr_lambda=ev.mmr_lambda, min_score=ev.min_score,
                              section_similarity=ev.section_similarity, max_scored=ev.max_scored,
                              verdict_windows=ev.verdict_windows,
                              threshold=support_threshold(config.citations.threshold, judge))
        cited = set(res.cited)
        info.update(quotes=len(res.evidence), papers=len({r.paper_id or r.id for r in refs if r.id in cited}),
                    sections=len(res.sections), verdict=res.verdict.label if res.verdict else None)
    answer.text, answer.sentences = res.text, res.sentences
    answer.evidence, answer.sections, answer.assessment = res.evidence, res.sections, res.verdict
    answer.judge = getattr(judge, "name", "") if judge is not None else ""
    if res.verdict is not None:
        yes, no = ("true", "false") if options.task == "claim" else ("yes", "no")
        answer.verdict = {"supported": yes, "contradicted": no}.get(res.verdict.label)
    answer.passages = list(refs)
    answer.references = [r for r in refs if r.id in cited]
    answer.no_evidence = not res.evidence
    return _finish(answer, run, t_start)


def _finish(answer: Answer, run: Run, t_start: float) -> Answer:
    answer.usage = run.usage
    answer.trace = run.trace
    answer.timings = dict(run.timings)
    answer.timings["total"] = round((time.perf_counter() - t_start) * 1000, 3)
    return answer
