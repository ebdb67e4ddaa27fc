"""The answer pipeline: retrieve -> initial answer -> self-feedback -> edits -> verified citations.

Each step is a function with typed input and output; ``run_pipeline`` chains them, records a trace
entry and timing per step, reports each step to ``on_event`` and stops between steps when
``should_cancel()`` says so. Passages are numbered in the order they come into play: the initial
retrieval gets 0..k-1, passages retrieved for feedback questions are numbered after them, and
verification and attribution run over ALL of them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datastore.errors import ErrorKind, ScholarError
from openscholar import prompts
from openscholar.answer import Answer, Edit, FeedbackItem, Reference, TraceEntry, Usage
from openscholar.citations import cited_ids, verify
from openscholar.evidence_answer import evidence_answer, resolve_mode
from openscholar.llm.protocol import LLM

if TYPE_CHECKING:
    from openscholar.engine import AnswerOptions, Engine

MAX_FEEDBACK_PARSED = 3


class AnswerCancelled(ScholarError):
    """The caller cancelled the request between two steps."""

    kind: ErrorKind = "conflict"


class InvalidPassages(ScholarError):
    kind: ErrorKind = "invalid_input"


# -- context ------------------------------------------------------------------------------
@dataclass
class Run:
    """State shared by the steps of one request."""

    question: str
    task: str
    llm: LLM
    max_tokens: int
    context_tokens: int
    max_passage_words: int
    on_event: Callable[[dict[str, Any]], None] | None = None
    should_cancel: Callable[[], bool] | None = None
    references: dict[int, Reference] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(default_factory=dict)
    trace: list[TraceEntry] = field(default_factory=list)

    @contextmanager
    def step(self, name: str, **detail: Any) -> Iterator[dict[str, Any]]:
        """Time a step, emit started/finished events and append a trace entry; ``detail`` grows."""
        if self.should_cancel is not None and self.should_cancel():
            raise AnswerCancelled(f"answer cancelled before step {name!r}", hint="submit the question again")
        info: dict[str, Any] = dict(detail)
        self._emit({"step": name, "status": "started", "detail": dict(info), "elapsed_ms": 0.0})
        t0 = time.perf_counter()
        yield info
        ms = (time.perf_counter() - t0) * 1000
        self.timings[name] = round(self.timings.get(name, 0.0) + ms, 3)
        self.trace.append(TraceEntry(step=name, elapsed_ms=round(ms, 3), detail=info))
        self._emit({"step": name, "status": "finished", "detail": info, "elapsed_ms": round(ms, 3)})

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def call(self, messages: list[dict[str, str]]) -> str:
        completion = self.llm.complete(messages, max_tokens=self.max_tokens)
        self.usage.add(completion.prompt_tokens, completion.completion_tokens)
        return completion.text.strip()

    def count_tokens(self, text: str) -> int:
        counter = getattr(self.llm, "count_tokens", None)
        return int(counter(text)) if callable(counter) else len(text) // 4 + 1


# -- steps --------------------------------------------------------------------------------
def references_from_hits(hits: list[Any], start: int, retrieved_for: str) -> list[Reference]:
    """Retrieved hits as references numbered from ``start``."""
    refs = []
    for n, hit in enumerate(hits, start=start):
        p = hit.passage
        refs.append(Reference(id=n, passage_id=p.passage_id, paper_id=p.paper_id, title=p.title, year=p.year,
                              url=p.url, authors=list(p.authors), venue=p.venue, text=p.text, score=float(hit.score),
                              retrieved_for=retrieved_for))
    return refs


def references_from_supplied(passages: list[dict[str, Any]]) -> list[Reference]:
    """Caller-supplied passages (title, text, optional paper_id, url, year) as references 0..n-1."""
    refs = []
    for n, item in enumerate(passages):
        text = str(item.get("text") or "").strip()
        if not text:
            raise InvalidPassages(f"passage {n} has no text", hint="give each passage a non-empty 'text'")
        year = item.get("year")
        refs.append(Reference(id=n, passage_id=item.get("passage_id"), paper_id=_opt_str(item.get("paper_id")),
                              title=str(item.get("title") or ""), year=int(year) if year not in (None, "") else None,
                              url=_opt_str(item.get("url")), text=text, retrieved_for=None))
    return refs


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def retrieve(engine: Engine, query: str, k: int, pipeline: str | None, min_score: float | None) -> tuple[list[Any], Any]:
    """Hits for ``query`` from the configured retriever (at least ``min_score``), and its routing."""
    result = engine.retriever(pipeline).retrieve(query, k)
    hits = list(result.hits)
    if min_score is not None:
        hits = [h for h in hits if h.score >= min_score]
    return hits, getattr(result, "routing", None)


def context_block(run: Run, refs: list[Reference], fixed_text: str) -> tuple[str, list[int]]:
    """The references listing that fits the model's context next to ``fixed_text``.

    Whole passages are dropped from the end (lowest-ranked, latest) until the prompt plus the
    completion budget fits; returns the listing and the ids shown.
    """
    lines = [prompts.format_passage(r.id, r.title, _cut(r.text, run.max_passage_words)) for r in refs]
    budget = run.context_tokens - run.max_tokens - run.count_tokens(fixed_text) - 32
    costs = [run.count_tokens(line) + 1 for line in lines]
    keep = len(lines)
    while keep > 1 and sum(costs[:keep]) > budget:
        keep -= 1  # the top passage always stays: a backend over its context then fails clearly
    return "\n".join(lines[:keep]), [r.id for r in refs[:keep]]


def _cut(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def generate(run: Run, refs: list[Reference]) -> tuple[str, list[int]]:
    """The initial answer from the task's prompt; returns the text and the reference ids shown."""
    prompt = prompts.TASK_PROMPTS[run.task]
    listing, shown = context_block(run, refs, prompt.render(passages="", question=run.question)[1]["content"] + prompt.system)
    return run.call(prompt.render(passages=listing, question=run.question)), shown


_FEEDBACK_LINE = re.compile(r"^\s*(?:[-*\d.)\s]*)\**(feedback|question)\s*\d*\s*\**\s*:\s*\**\s*(.*)$", re.IGNORECASE)


def parse_feedback(text: str, limit: int = MAX_FEEDBACK_PARSED) -> list[FeedbackItem]:
    """Feedback items from ``Feedback: ...`` lines, each with the ``Question: ...`` line after it.

    The prompt ends with "Feedback:", so a reply that starts directly with the feedback counts as
    the first item. "none" items are dropped; at most ``limit`` items are returned.
    """
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if lines and not _FEEDBACK_LINE.match(lines[0]):
        lines[0] = "Feedback: " + lines[0]
    items: list[FeedbackItem] = []
    for line in lines:
        m = _FEEDBACK_LINE.match(line)
        if not m:
            if items and items[-1].question is None:
                items[-1].feedback = f"{items[-1].feedback} {line.strip()}".strip()
            continue
        kind, body = m.group(1).lower(), m.group(2).strip()
        if kind == "feedback":
            items.append(FeedbackItem(feedback=body))
        elif items and body and body.lower() not in ("none", "n/a", "-"):
            items[-1].question = body
    return [it for it in items if it.feedback and not _is_none(it.feedback)][:limit]


def _is_none(text: str) -> bool:
    return text.strip().strip(".").lower() in ("none", "no feedback", "n/a", "no", "nothing")


def feedback(run: Run, refs: list[Reference], answer: str, limit: int) -> list[FeedbackItem]:
    listing, _ = context_block(run, refs, prompts.FEEDBACK.template + answer + run.question)
    reply = run.call(prompts.FEEDBACK.render(passages=listing, question=run.question, answer=answer))
    return parse_feedback(reply, limit)


def edit(run: Run, refs: list[Reference], answer: str, item: FeedbackItem) -> tuple[str, list[int]]:
    """The answer revised for one feedback item; returns the text and the reference ids shown."""
    listing, shown = context_block(run, refs, prompts.EDIT.template + answer + run.question + item.feedback)
    reply = run.call(prompts.EDIT.render(passages=listing, question=run.question, answer=answer, feedback=item.feedback))
    return re.sub(r"^\s*(edited answer|answer)\s*:\s*", "", reply, flags=re.IGNORECASE).strip(), shown


def accept_edit(before: str, after: str, max_shrink: float, task: str = "long_form") -> tuple[bool, str]:
    """The 10% rule: an edit may not shorten the answer by more than ``max_shrink`` of its length.
    For short-form tasks an edit must also keep the answer's verdict (true/false, yes/no) as its
    first word: feedback refines the justification, it may not drop or flip the answer itself."""
    if not after.strip():
        return False, "empty edit"
    floor = (1.0 - max_shrink) * len(before)
    if len(after) < floor:
        return False, f"shrinks the answer from {len(before)} to {len(after)} chars (> {max_shrink:.0%})"
    verdict = verdict_of(task, before)
    if verdict is not None and verdict_of(task, after) != verdict:
        return False, f"drops the verdict {verdict!r}"
    return True, "kept"


def verdict_of(task: str, text: str) -> str | None:
    """claim -> 'true'/'false', yes_no -> 'yes'/'no' from the answer's first word."""
    first = re.sub(r"[^a-z]", "", (text.strip().split() or [""])[0].lower())
    if task == "claim" and first in ("true", "false"):
        return first
    if task == "yes_no" and first in ("yes", "no"):
        return first
    return None


# -- the chain ----------------------------------------------------------------------------
def run_pipeline(
    engine: Engine,
    question: str,
    options: AnswerOptions,
    *,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Answer:
    """Answer ``question`` with the engine's components, following ``options`` over settings."""
    s = engine.settings
    question = question.strip()
    if not question:
        raise InvalidPassages("the question is empty", hint="ask a question")
    t_start = time.perf_counter()
    llm = engine.llm
    run = Run(question=question, task=options.task, llm=llm, max_tokens=options.max_tokens or s.llm.max_tokens,
              context_tokens=s.llm.context_tokens, max_passage_words=s.pipeline.max_passage_words,
              on_event=on_event, should_cancel=should_cancel)
    top_k = options.top_k or s.pipeline.top_k or s.retrieval.top_k
    routing: Any = None
    pipeline_name = "passages" if options.passages is not None else (options.pipeline or s.retrieval.pipeline)

    with run.step("retrieve", query=question, k=top_k, pipeline=pipeline_name) as info:
        if options.passages is not None:
            refs = references_from_supplied(options.passages)
        else:
            hits, routing = retrieve(engine, question, top_k, options.pipeline, s.pipeline.min_score)
            refs = references_from_hits(hits, 0, question)
        info["passages"] = len(refs)
        if routing is not None:
            info["routing"] = _routing_dict(routing)
    run.references = {r.id: r for r in refs}

    mode = resolve_mode(options.mode or s.pipeline.mode, s.llm.model, s.pipeline.capable_models)
    answer = Answer(question=question, task=options.task, text="", pipeline=pipeline_name, mode=mode,  # type: ignore[arg-type]
                    model=getattr(llm, "model_id", "") if mode == "synthesis" else "", routing=_routing_dict(routing))
    if not refs:
        answer.text, answer.no_evidence = prompts.NO_EVIDENCE, True
        return _finish(answer, run, t_start)
    if mode == "evidence":
        return _evidence_mode(engine, run, answer, refs, options, t_start)

    with run.step("generate", passages=len(refs)) as info:
        text, shown = generate(run, refs)
        info.update(chars=len(text), shown=len(shown), citations=cited_ids(text))
    in_play = set(shown)

    if options.feedback and s.pipeline.feedback and s.pipeline.max_feedback > 0:
        with run.step("feedback") as info:
            items = feedback(run, [run.references[i] for i in sorted(in_play)], text, min(s.pipeline.max_feedback, 3))
            info["items"] = [it.model_dump() for it in items]
        for idx, item in enumerate(items):
            if item.question and options.passages is None:
                with run.step("retrieve", query=item.question, k=s.pipeline.feedback_top_k, feedback_index=idx) as info:
                    hits, _ = retrieve(engine, item.question, s.pipeline.feedback_top_k, options.pipeline, s.pipeline.min_score)
                    known = {r.passage_id for r in run.references.values() if r.passage_id is not None}
                    fresh = [h for h in hits if h.passage.passage_id not in known]
                    new = references_from_hits(fresh, len(run.references), item.question)
                    run.references.update({r.id: r for r in new})
                    item.new_references = [r.id for r in new]
                    info["new_references"] = item.new_references
            with run.step("edit", feedback_index=idx) as info:
                context = [run.references[i] for i in sorted(in_play | set(item.new_references))]
                proposed, shown = edit(run, context, text, item)
                kept, reason = accept_edit(text, proposed, s.pipeline.max_shrink, options.task)
                answer.edits.append(Edit(feedback_index=idx, kept=kept, reason=reason, chars_before=len(text),
                                         chars_after=len(proposed), text=proposed))
                info.update(kept=kept, reason=reason, chars_before=len(text), chars_after=len(proposed))
                if kept:
                    text = proposed
                    in_play |= set(shown)
        answer.feedback = items

    verify_on = options.verify and s.citations.verify
    with run.step("verify", judge=s.citations.judge if verify_on else None, passages=len(in_play)) as info:
        refs_in_play = {i: run.references[i] for i in sorted(in_play)}
        judge = engine.judge if verify_on else None
        checked, sentences = verify(text, refs_in_play, judge, threshold=s.citations.threshold,
                                      contradiction_threshold=s.citations.contradiction_threshold,
                                    attribute=s.citations.attribute, max_citations=s.citations.max_citations,
                                    candidates=s.citations.attribution_candidates)
        info.update(verification_counts(sentences, checked=judge is not None))
    answer.judge = getattr(judge, "name", "") if judge is not None else ""
    answer.text, answer.sentences = checked, sentences
    answer.verdict = verdict_of(options.task, checked)
    if judge is not None and s.pipeline.refuse_unsupported and sentences and not any(x.supported for x in sentences):
        # Nothing the model wrote is backed by a passage: say so rather than return an invention.
        # A short-form verdict (true/false, yes/no) is kept, flagged as unbacked: it is the answer the
        # caller asked for, and dropping it would turn a judgement into a non-answer.
        v = answer.verdict
        answer.text = prompts.UNSUPPORTED_VERDICT.format(verdict=v.capitalize()) if v else prompts.UNSUPPORTED
        answer.no_evidence = True
        run.trace[-1].detail["refused"] = True
    answer.passages = list(refs_in_play.values())
    cited = set() if answer.no_evidence else {c for x in sentences for c in x.citations}
    answer.references = [r for i, r in refs_in_play.items() if i in cited]
    return _finish(answer, run, t_start)


def verification_counts(sentences: list[Any], *, checked: bool) -> dict[str, Any]:
    """The verify step's honest counts: supported / unsupported / contradicted sentences, the
    citations removed, and which citations verification added (sentence index -> ids)."""
    judged = [x for x in sentences if x.checked]
    return {"checked": checked, "sentences": len(judged),
            "supported": sum(x.status == "supported" for x in judged),
            "unsupported": sum(x.status == "unsupported" for x in judged),
            "contradicted": sum(x.status == "contradicted" for x in judged),
            "removed": sum(len(x.removed) for x in sentences),
            "added": {str(i): x.added for i, x in enumerate(sentences) if x.added}}


def _evidence_mode(engine: Engine, run: Run, answer: Answer, refs: list[Reference], options: AnswerOptions,
                   t_start: float) -> Answer:
    """Evidence mode: quotes in themed sections and, for claims and yes/no questions, the verdict."""
    s = engine.settings
    ev = s.evidence
    judge = engine.judge if options.verify and s.citations.verify and options.task != "long_form" else None
    with run.step("evidence", passages=len(refs), judge=getattr(judge, "name", None)) as info:
        res = evidence_answer(run.question, options.task, refs, scorer=engine.quote_scorer, judge=judge,
                              embedder=engine.embedder, quotes=ev.quotes, per_paper=ev.per_paper,
                              mmr_lambda=ev.mmr_lambda, min_score=ev.min_score,
                              section_similarity=ev.section_similarity, threshold=s.citations.threshold)
        papers = {r.paper_id or r.id for r in refs if r.id in set(res.cited)}
        info.update(quotes=len(res.evidence), papers=len(papers), sections=len(res.sections),
                    verdict=res.verdict.label if res.verdict else None)
    answer.text, answer.sentences = res.text, res.sentences
    answer.evidence, answer.sections, answer.assessment = res.evidence, res.sections, res.verdict
    answer.judge = getattr(judge, "name", "") if judge is not None else ""
    if res.verdict is not None:
        answer.verdict = {"supported": "true", "contradicted": "false"}.get(res.verdict.label)
        if answer.verdict is not None and options.task == "yes_no":
            answer.verdict = "yes" if answer.verdict == "true" else "no"
    answer.passages = refs
    answer.references = [r for r in refs if r.id in set(res.cited)]
    answer.no_evidence = not res.evidence
    return _finish(answer, run, t_start)


def _routing_dict(routing: Any) -> dict[str, Any] | None:
    if routing is None:
        return None
    if isinstance(routing, dict):
        return routing
    dump = getattr(routing, "model_dump", None) or getattr(routing, "to_dict", None)
    if callable(dump):
        return dict(dump())
    if hasattr(routing, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(routing)
    return {"value": str(routing)}


def _finish(answer: Answer, run: Run, t_start: float) -> Answer:
    answer.usage = run.usage
    answer.trace = run.trace
    answer.timings = dict(run.timings)
    answer.timings["total"] = round((time.perf_counter() - t_start) * 1000, 3)
    return answer
