"""The steps of the answer loop, each a function of typed inputs: references, the LLM's calls, parsing.

`Run` holds what the steps of one request share (the LLM, its token budgets, the clock); the
chain that calls the steps in order is `openscholar.answering.run_answer`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from datastore.errors import ErrorKind, ScholarError
from openscholar import prompts
from openscholar.answer import FeedbackItem, Reference, TraceEntry, Usage
from openscholar.config import StepBudgets
from openscholar.llm.protocol import LLM, LLMOutOfTime
from openscholar.options import SuppliedPassage
from retriever.protocols import Hit

MAX_FEEDBACK_PARSED = 3
STEPS = ("retrieve", "generate", "feedback", "edit", "verify")


class AnswerCancelled(ScholarError):
    """The caller cancelled the request between two steps."""

    kind: ErrorKind = "conflict"


class InvalidQuestion(ScholarError):
    kind: ErrorKind = "invalid_input"


class OutOfTime(Exception):
    """A step ran out of its budget (or the answer of its total) before it had anything to return."""

    def __init__(self, step: str) -> None:
        super().__init__(step)
        self.step = step


@dataclass
class Clock:
    """The answer's time budgets: each step's own, capped by what is left of the total."""

    budgets: StepBudgets
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.budgets.total_s - (time.monotonic() - self.start)

    def limit(self, step: str) -> float:
        """Seconds ``step`` may take from now."""
        return min(float(getattr(self.budgets, f"{step}_s")), self.left())


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
    clock: Clock
    on_event: Callable[[dict[str, Any]], None] | None = None
    should_cancel: Callable[[], bool] | None = None
    references: dict[int, Reference] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(default_factory=dict)
    trace: list[TraceEntry] = field(default_factory=list)
    partial_step: str | None = None

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

    def ran_out(self, step: str) -> None:
        """Record that ``step`` ran out of time (the first such step names the partial answer)."""
        if self.partial_step is None:
            self.partial_step = step

    def call(self, messages: list[dict[str, str]], step: str) -> str:
        """One LLM call within ``step``'s budget; a reply cut by the time limit marks the answer partial."""
        limit = self.clock.limit(step)
        if limit <= 0:
            raise OutOfTime(step)
        try:
            completion = self.llm.complete(messages, max_tokens=self.max_tokens, time_limit_s=limit)
        except LLMOutOfTime as exc:
            raise OutOfTime(step) from exc
        self.usage.add(completion.prompt_tokens, completion.completion_tokens)
        if completion.finish_reason == "time":
            self.ran_out(step)
        return completion.text.strip()

    def count_tokens(self, text: str) -> int:
        counter = getattr(self.llm, "count_tokens", None)
        return int(counter(text)) if callable(counter) else len(text) // 4 + 1


# -- references ---------------------------------------------------------------------------
def references_from_hits(hits: list[Hit], start: int, retrieved_for: str) -> list[Reference]:
    """Retrieved hits as references numbered from ``start``."""
    return [Reference.numbered(hit.passage, n, score=float(hit.score), retrieved_for=retrieved_for)
            for n, hit in enumerate(hits, start=start)]


def references_from_supplied(passages: list[SuppliedPassage]) -> list[Reference]:
    """Caller-supplied passages (validated where the request entered) as references 0..n-1."""
    return [Reference(id=n, **p.model_dump()) for n, p in enumerate(passages)]


# -- the LLM's steps ----------------------------------------------------------------------
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
    text = run.call(prompt.render(passages=listing, question=run.question), "generate")
    if run.partial_step == "generate":
        text = whole_sentences(text)
    return text, shown


def whole_sentences(text: str) -> str:
    """``text`` up to its last complete sentence (a reply cut mid-sentence by its time limit)."""
    ends = [m.end() for m in re.finditer(r"[.!?](?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])*(?=\s|$)", text)]
    return text[: ends[-1]].strip() if ends else text.strip()


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
    reply = run.call(prompts.FEEDBACK.render(passages=listing, question=run.question, answer=answer), "feedback")
    return parse_feedback(reply, limit)


def edit(run: Run, refs: list[Reference], answer: str, item: FeedbackItem) -> tuple[str, list[int], bool]:
    """The answer revised for one feedback item: the text, the reference ids shown, and whether the
    edit was cut short by its time limit (a cut edit is never applied)."""
    listing, shown = context_block(run, refs, prompts.EDIT.template + answer + run.question + item.feedback)
    before = run.partial_step
    reply = run.call(prompts.EDIT.render(passages=listing, question=run.question, answer=answer, feedback=item.feedback),
                     "edit")
    cut = run.partial_step == "edit" and before != "edit"
    return re.sub(r"^\s*(edited answer|answer)\s*:\s*", "", reply, flags=re.IGNORECASE).strip(), shown, cut


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
