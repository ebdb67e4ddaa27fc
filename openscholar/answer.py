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
SentenceStatus = Literal["supported", "unsupported", "contradicted"]
VerdictLabel = Literal["supported", "contradicted", "not enough evidence"]


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
    """One sentence of the final answer with its checked citations and its verification status."""

    text: str = Field(description="The sentence without citation markers.")
    citations: list[int] = Field(default_factory=list, description="Reference ids the judge passed as supporting it.")
    support: dict[int, float] = Field(default_factory=dict, description="Support score per judged reference id.")
    supported: bool = Field(False, description="True when at least one citation passed the threshold.")
    status: SentenceStatus = Field(
        "unsupported",
        description="supported: a citation passed the judge; contradicted: a passage in play contradicts it "
        "(see contradicted_by); unsupported: neither.",
    )
    contradicted_by: list[int] = Field(default_factory=list, description="Reference ids that contradict the sentence.")
    attributed: bool = Field(False, description="True when verification added a citation (none written or all removed).")
    added: list[int] = Field(default_factory=list, description="The citations verification added (post-hoc attribution).")
    removed: list[int] = Field(default_factory=list, description="Citations written by the model and removed.")
    checked: bool = Field(True, description="False for fragments too short to be a claim (headings, 'Yes.').")
    paragraph: int = Field(0, description="Paragraph of the answer the sentence is in (0-based).")


class Evidence(BaseModel):
    """A verbatim quote from a passage in play: ``reference.text[start:end] == quote``."""

    reference: int = Field(description="The id of the Reference quoted (the n of [n]).")
    start: int = Field(description="Character offset of the quote in the reference's text.")
    end: int = Field(description="End offset (exclusive).")
    quote: str = Field(description="The sentence, exactly as in the passage.")
    score: float = Field(description="Relevance to the question (quote scorer, sigmoid), in [0, 1].")
    section: int = Field(0, description="Index of the themed section it is shown in.")
    judgement: dict[str, float] | None = Field(
        None, description="supports / contradicts / neither of the verdict's statement by this quote, if judged."
    )


class Section(BaseModel):
    """A theme of the evidence: quotes whose embeddings cluster together, best first."""

    title: str
    evidence: list[int] = Field(default_factory=list, description="Indices into Answer.evidence.")


class Verdict(BaseModel):
    """The support judge's verdict on a claim (or a yes/no question turned into a statement)."""

    label: VerdictLabel
    statement: str = Field(description="What was judged: the claim, or the yes/no question as a statement.")
    supports: float = Field(description="Best support score over the quotes judged.")
    contradicts: float = Field(description="Best contradiction score over the quotes judged.")
    deciding: list[int] = Field(default_factory=list, description="Indices into Answer.evidence that decided it.")


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
    mode: Literal["evidence", "synthesis"] = Field(
        "synthesis", description="evidence: themed verbatim quotes (+ verdict); synthesis: the LLM's checked text."
    )
    text: str = Field(description="The answer with citations written [n].")
    verdict: str | None = Field(None, description="claim: 'true'/'false'; yes_no: 'yes'/'no'; else None.")
    assessment: Verdict | None = Field(None, description="The support judge's verdict (claim and yes/no questions).")
    evidence: list[Evidence] = Field(default_factory=list, description="Verbatim quotes selected for the question.")
    sections: list[Section] = Field(default_factory=list, description="Themed sections of the evidence (evidence mode).")
    no_evidence: bool = Field(False, description="True when nothing relevant was retrieved.")
    sentences: list[Sentence] = Field(default_factory=list)
    references: list[Reference] = Field(
        default_factory=list, description="The references cited in text, and those that contradict a sentence."
    )
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
    def reference_numbers(self) -> dict[int, int]:
        """Reference id -> the number shown to people: 1, 2, ... in order of first citation. Passages of
        one paper share its number (people cite papers; JSON keeps the passage ids)."""
        order = [int(n) for group in _CITE.findall(self.text) for n in re.split(r"\s*[,;]\s*", group)]
        paper = {r.id: _bibkey(r) for r in self.references}
        marks = [c for s in self.sentences for c in s.contradicted_by]
        numbers: dict[int, int] = {}
        by_paper: dict[str, int] = {}
        for n in [*order, *marks, *(r.id for r in self.references)]:
            if n in paper and n not in numbers:
                numbers[n] = by_paper.setdefault(paper[n], len(by_paper) + 1)
        return numbers

    def marked_text(self) -> str:
        """The text with unsupported and contradicted sentences visibly marked (synthesis answers)."""
        if self.mode == "evidence" or not self.sentences or self.no_evidence:
            return self.text
        from openscholar.citations import render

        return render(self.sentences, [s.paragraph for s in self.sentences], marks=True)

    def to_markdown(self) -> str:
        """The answer with references numbered from 1, then the reference list (authors, year,
        title, venue, url). Unsupported and contradicted sentences carry a visible mark."""
        numbers = self.reference_numbers()

        def renumber(m: re.Match[str]) -> str:
            ids = [int(n) for n in re.split(r"\s*[,;]\s*", m.group(1))]
            shown = dict.fromkeys(numbers[i] for i in ids if i in numbers)  # one mark per paper
            return "".join(f"[{k}]" for k in shown)

        text = re.sub(r"(\[\d+\])(?:\1)+", r"\1", _CITE.sub(renumber, self.marked_text()))
        lines = [text.strip(), ""]
        refs: dict[int, Reference] = {}
        for ref in sorted((r for r in self.references if r.id in numbers), key=lambda r: (numbers[r.id], r.id)):
            refs.setdefault(numbers[ref.id], ref)
        if refs:
            lines += ["## References", ""]
            lines += [f"[{num}] {format_reference(ref)}" for num, ref in refs.items()]
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
            if ref.venue:
                fields["journal"] = ref.venue
            if ref.url:
                fields["url"] = ref.url
            if ref.paper_id:
                fields["note"] = f"paper id {ref.paper_id}"
            body = ",\n".join(f"  {k} = {{{_bib_escape(v)}}}" for k, v in fields.items())
            kind = "article" if ref.venue else "misc"
            entries.append(f"@{kind}{{{key},\n{body}\n}}")
        return "\n\n".join(entries) + ("\n" if entries else "")


_CITE = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


def format_reference(ref: Reference) -> str:
    """"Authors (year). Title. Venue. <url>" with whatever the corpus has; the paper id when it has
    no authors, so a reference can always be found again."""
    authors = _authors(ref.authors)
    year = f" ({ref.year})" if ref.year else ""
    title = (ref.title or "(untitled)").rstrip(".")
    head = f"{authors}{year}. {title}." if authors else f"{title}{year}."
    venue = f" {ref.venue.rstrip('.')}." if ref.venue else ""
    link = f" <{ref.url}>" if ref.url else ""
    ident = f" Paper {ref.paper_id}." if ref.paper_id and not (authors or ref.url) else ""
    return f"{head}{venue}{ident}{link}"


def _authors(names: list[str]) -> str:
    if not names:
        return ""
    if len(names) > 3:
        return f"{names[0]} et al."
    return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]


def _bibkey(ref: Reference) -> str:
    raw = ref.paper_id or f"ref{ref.id}"
    return re.sub(r"[^A-Za-z0-9_:-]", "_", raw)


def _bib_escape(value: str) -> str:
    return value.replace("{", "\\{").replace("}", "\\}")
