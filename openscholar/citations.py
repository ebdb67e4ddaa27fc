"""Citation parsing and verification: a citation is shown only when the support judge passed it.

The draft is split into sentences and each (sentence, passage) pair is judged 3-way (supports /
contradicts / neither, `openscholar.judges.protocol`). The rules:

1. A citation the model wrote is kept only if ``supports`` passes ``threshold`` and beats
   ``contradicts``; citations of unknown ids are dropped unconditionally.
2. Post-hoc attribution: a sentence left without a citation gets the best-supporting passage in
   play, only if it passes the same test (``attributed``, and the ids in ``added``).
3. A sentence that a passage in play contradicts (``contradicts`` >= ``contradiction_threshold``,
   above ``supports``, and ``supports`` below ``threshold``: a passage that both supports and
   contradicts it is mixed, not a contradiction) is marked ``contradicted`` with those passages
   (``contradicted_by``); it keeps no citation, so it can never look checked.
4. Every other sentence is ``supported`` (a citation passed) or ``unsupported``.

To bound the judge's work, attribution and the contradiction check read, besides the cited
passages, the ``candidates`` passages closest to the sentence in content words.

Verification can be given a time limit (`VerifyClock`): the judge then reads in small batches,
the written citations first, and a citation it did not get to is removed (never shown unchecked);
``timed_out`` is set on the caller's clock.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from openscholar.answer import Reference, Sentence
from openscholar.judges.lexical import content_words
from openscholar.judges.protocol import Judgement, SupportJudge

_CITE = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[\[A-Z0-9(\"'])")
_LEADING_CITES = re.compile(r"^((?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])+)\s*")
_MIN_WORDS = 4  # shorter fragments ("Yes.", headings) are not claims to check


JUDGE_BATCH = 16  # pairs scored between two looks at the clock


@dataclass
class VerifyClock:
    """A deadline (``time.monotonic()`` seconds) for verification; ``timed_out`` says it was reached."""

    deadline: float | None = None
    timed_out: bool = False

    def expired(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.timed_out = True
        return self.timed_out


_MARK = {"unsupported": "(unsupported)", "contradicted": "(contradicted by {ids})"}


@dataclass
class ParsedSentence:
    text: str
    citations: list[int]
    paragraph: int


def parse_sentences(text: str) -> list[ParsedSentence]:
    """Sentences with the citation ids written in or right after them, paragraph by paragraph."""
    out: list[ParsedSentence] = []
    for pi, para in enumerate(p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()):
        pieces = [s for s in _BOUNDARY.split(" ".join(para.split())) if s.strip()]
        for piece in pieces:
            lead = _LEADING_CITES.match(piece)
            if lead and out and out[-1].paragraph == pi:
                # "... claim. [1] Next" -> the markers belong to the previous sentence.
                out[-1].citations.extend(_ids(lead.group(1)))
                piece = piece[lead.end():]
                if not piece.strip():
                    continue
            cites = _ids(piece)
            clean = _CITE.sub("", piece)
            clean = re.sub(r"\s+([.,;:!?])", r"\1", " ".join(clean.split())).strip()
            if clean:
                out.append(ParsedSentence(clean, cites, pi))
    for s in out:
        s.citations = list(dict.fromkeys(s.citations))
    return out


def _ids(text: str) -> list[int]:
    return [int(n) for group in _CITE.findall(text) for n in re.split(r"\s*[,;]\s*", group)]


def cited_ids(text: str) -> list[int]:
    """Every id written [n] in ``text``, in order of first appearance."""
    return list(dict.fromkeys(_ids(text)))


def render(sentences: list[Sentence], paragraphs: list[int], *, marks: bool = False) -> str:
    """Text with citations written ``[n]`` before the sentence's final punctuation; with ``marks``,
    unsupported and contradicted sentences are followed by a visible mark."""
    paras: dict[int, list[str]] = {}
    for s, p in zip(sentences, paragraphs, strict=True):
        body = s.text
        if s.citations:
            cites = "".join(f"[{c}]" for c in s.citations)
            m = re.match(r"^(.*?)([.!?]*)$", body, re.DOTALL)
            assert m is not None
            body = f"{m.group(1).rstrip()} {cites}{m.group(2)}"
        if marks and s.checked and s.status != "supported":
            ids = "".join(f"[{c}]" for c in s.contradicted_by)
            body = f"{body} _{_MARK[s.status].format(ids=ids)}_"
        paras.setdefault(p, []).append(body)
    return "\n\n".join(" ".join(v) for _, v in sorted(paras.items()))


def passage_text(ref: Reference) -> str:
    """What the judge reads for a reference: title line, then the text."""
    return f"{ref.title}\n{ref.text}" if ref.title else ref.text


def _passes(j: Judgement, threshold: float) -> bool:
    return j.supports >= threshold and j.supports > j.contradicts


def _contradicts(j: Judgement, threshold: float, support_threshold: float) -> bool:
    """A contradiction the passage does not also support: a passage with one window that supports
    the sentence and another that contradicts it is mixed, not a contradiction."""
    return j.contradicts >= threshold and j.contradicts > j.supports and j.supports < support_threshold


def verify(
    text: str,
    references: Mapping[int, Reference],
    judge: SupportJudge | None,
    *,
    threshold: float = 0.5,
    contradiction_threshold: float = 0.5,
    attribute: bool = True,
    max_citations: int = 3,
    candidates: int = 5,
    clock: VerifyClock | None = None,
) -> tuple[str, list[Sentence]]:
    """Checked text and sentences (see the module doc). With ``judge=None`` only unknown ids are
    removed and a sentence with a known citation counts as supported (nothing was checked)."""
    clock = clock or VerifyClock()
    parsed = parse_sentences(text)
    sentences: list[Sentence] = []
    for ps in parsed:
        valid = [c for c in ps.citations if c in references]
        sentences.append(Sentence(text=ps.text, citations=valid, removed=[c for c in ps.citations if c not in references],
                                  paragraph=ps.paragraph))
    checkable = [i for i, s in enumerate(sentences) if len(s.text.split()) >= _MIN_WORDS or s.citations]
    for i, s in enumerate(sentences):
        s.checked = i in checkable
        if judge is None:
            s.supported = bool(s.citations)
            s.status = "supported" if s.supported else "unsupported"
    if judge is not None and references:
        verdicts: dict[int, dict[int, Judgement]] = {i: {} for i in checkable}
        # The citations the model wrote, and the closest passages in play (attribution, contradiction).
        todo: list[tuple[int, int]] = []
        for i in checkable:
            words = content_words(sentences[i].text)
            ranked = sorted((r for r in references if r not in sentences[i].citations),
                            key=lambda r: (-_overlap(words, references[r]), r))
            todo.extend((i, r) for r in [*sentences[i].citations, *ranked[:candidates]])
        cited_first = sorted(todo, key=lambda ir: ir[1] not in sentences[ir[0]].citations)
        _judge(judge, sentences, references, cited_first, verdicts, clock)
        for i in checkable:
            s, js = sentences[i], verdicts[i]
            s.support = {r: round(js[r].supports, 4) for r in js}
            s.contradicted_by = sorted((r for r in js if _contradicts(js[r], contradiction_threshold, threshold)),
                                       key=lambda r: -js[r].contradicts)
            kept = [c for c in s.citations if c in js and _passes(js[c], threshold)]  # unjudged (out of time): removed
            s.removed += [c for c in s.citations if c not in kept]
            s.citations = sorted(kept, key=lambda c: -js[c].supports)[:max_citations]
            if s.contradicted_by:
                # A sentence a passage contradicts keeps no citation: it must never look checked.
                s.removed += [c for c in s.citations if c not in s.removed]
                s.citations = []
                s.status = "contradicted"
                continue
            if not s.citations and attribute:
                passing = [r for r in js if _passes(js[r], threshold)]
                if passing:
                    best = max(passing, key=lambda r: js[r].supports)
                    s.citations, s.added, s.attributed = [best], [best], True
            s.status = "supported" if s.citations else "unsupported"
        for i in checkable:
            sentences[i].supported = sentences[i].status == "supported"
    return render(sentences, [p.paragraph for p in parsed]), sentences


def _judge(
    judge: SupportJudge,
    sentences: list[Sentence],
    references: Mapping[int, Reference],
    pairs: list[tuple[int, int]],
    into: dict[int, dict[int, Judgement]],
    clock: VerifyClock,
) -> None:
    """Judge ``pairs`` in batches until the clock runs out; unjudged pairs stay out of ``into``."""
    for start in range(0, len(pairs), JUDGE_BATCH):
        if clock.expired():
            return
        batch = pairs[start : start + JUDGE_BATCH]
        values = judge.judge([(sentences[i].text, passage_text(references[r])) for i, r in batch])
        for (i, r), v in zip(batch, values, strict=True):
            into[i][r] = v


def _overlap(words: set[str], ref: Reference) -> float:
    return len(words & content_words(f"{ref.title} {ref.text}")) / len(words) if words else 0.0
