"""The `Answer`: what the pipeline returns, with every citation resolvable to a reference.

Citations are written ``[n]`` in ``text``; ``n`` is the ``id`` of an entry of ``passages`` (every
passage in play) and of ``references`` (the ones actually cited). JSON via
``answer.model_dump(mode="json")``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from datastore.models import Passage, PassageData
from retriever.protocols import Routing

Task = Literal["long_form", "claim", "yes_no"]


class Reference(PassageData):
    """A passage shown to the model, numbered as in the prompt and in the answer text."""

    id: int = Field(description="The n written [n] in the answer text.")
    score: float | None = Field(None, description="Retrieval score, if retrieved.")
    retrieved_for: str | None = Field(None, description="The query that retrieved it (question or feedback question).")

    @classmethod
    def numbered(cls, passage: Passage, n: int, *, score: float | None = None, retrieved_for: str | None = None) -> Reference:
        """A datastore passage as reference ``n``."""
        return cls(id=n, score=score, retrieved_for=retrieved_for, **PassageData.fields_of(passage))


class Sentence(BaseModel):
    """One sentence of the final answer with its checked citations."""

    text: str = Field(description="The sentence without citation markers.")
    citations: list[int] = Field(default_factory=list, description="Reference ids that support it.")
    support: dict[int, float] = Field(default_factory=dict, description="Support score per judged reference id.")
    supported: bool = Field(False, description="True when at least one citation passed the threshold.")
    attributed: bool = Field(False, description="True when a citation was added post hoc (none written or all removed).")
    removed: list[int] = Field(default_factory=list, description="Citations written by the model and removed.")


class FeedbackItem(BaseModel):
    """One piece of self-feedback on the draft, optionally asking for more retrieval."""

    feedback: str
    question: str | None = Field(None, description="Retrieval question for more evidence, if any.")
    new_references: list[int] = Field(default_factory=list, description="Reference ids retrieved for it.")


class Edit(BaseModel):
    """The answer revised for one feedback item, kept only if it did not shrink the answer too much."""

    feedback_index: int
    kept: bool
    reason: str = ""
    chars_before: int = 0
    chars_after: int = 0
    text: str = Field("", description="The proposed edited answer.")


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.calls += 1


class TraceEntry(BaseModel):
    """One pipeline step: what went in and came out, in short, and how long it took."""

    step: str
    elapsed_ms: float
    detail: dict[str, Any] = Field(default_factory=dict)


class Answer(BaseModel):
    """A checked answer to one question."""

    question: str
    task: Task = "long_form"
    text: str = Field(description="The answer with citations written [n].")
    verdict: str | None = Field(None, description="claim: 'true'/'false'; yes_no: 'yes'/'no'; else None.")
    no_evidence: bool = Field(False, description="True when nothing relevant was retrieved.")
    sentences: list[Sentence] = Field(default_factory=list)
    references: list[Reference] = Field(default_factory=list, description="The references cited in text.")
    passages: list[Reference] = Field(default_factory=list, description="Every passage in play (shown to the model).")
    feedback: list[FeedbackItem] = Field(default_factory=list)
    edits: list[Edit] = Field(default_factory=list)
    routing: Routing | None = Field(None, description="The query encoder's routing decision (router pipelines).")
    pipeline: str | None = Field(None, description="Retrieval pipeline used ('passages' if caller-supplied).")
    model: str = ""
    judge: str = ""
    partial: bool = Field(False, description="True when a step ran out of its time budget (answer.budgets).")
    partial_step: str | None = Field(None, description="The first step that ran out of time, if any.")
    usage: Usage = Field(default_factory=Usage)
    timings: dict[str, float] = Field(default_factory=dict, description="Milliseconds per step, and 'total'.")
    trace: list[TraceEntry] = Field(default_factory=list)

    # -- renderings -----------------------------------------------------------------------
    def to_markdown(self) -> str:
        """The answer, then a numbered reference list of the cited passages."""
        lines = [self.text.strip(), ""]
        if self.references:
            lines.append("## References")
            lines.append("")
            for ref in self.references:
                year = f" ({ref.year})" if ref.year else ""
                link = f" <{ref.url}>" if ref.url else ""
                paper = f" paper {ref.paper_id}" if ref.paper_id else ""
                lines.append(f"[{ref.id}] {(ref.title or '(untitled)').rstrip('.')}{year}.{paper}{link}")
        return "\n".join(lines).rstrip() + "\n"

    def to_bibtex(self) -> str:
        """BibTeX entries for the cited papers (one per paper, keyed by paper id)."""
        entries: list[str] = []
        seen: set[str] = set()
        for ref in self.references:
            key = _bibkey(ref)
            if key in seen:
                continue
            seen.add(key)
            fields = {"title": ref.title or "(untitled)"}
            if ref.authors:
                fields["author"] = " and ".join(ref.authors)
            if ref.year:
                fields["year"] = str(ref.year)
            if ref.url:
                fields["url"] = ref.url
            if ref.paper_id:
                fields["note"] = f"paper id {ref.paper_id}"
            body = ",\n".join(f"  {k} = {{{_bib_escape(v)}}}" for k, v in fields.items())
            entries.append(f"@misc{{{key},\n{body}\n}}")
        return "\n\n".join(entries) + ("\n" if entries else "")


def _bibkey(ref: Reference) -> str:
    raw = ref.paper_id or f"ref{ref.id}"
    return re.sub(r"[^A-Za-z0-9_:-]", "_", raw)


def _bib_escape(value: str) -> str:
    return value.replace("{", "\\{").replace("}", "\\}")
