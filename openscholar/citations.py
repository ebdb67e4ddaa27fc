"""Citation parsing and verification: every kept citation resolves to a passage that supports it.

The draft is split into sentences; each ``[n]`` is checked with a ``SupportJudge``. Citations that
match no passage are dropped unconditionally; with a judge, citations below the threshold are
removed, and a sentence left without support gets the best-supporting passage among ALL passages
in play (post-hoc attribution) if that passes the threshold, else it is marked unsupported. To
bound the judge's work, attribution scores the ``candidates`` passages closest to the sentence in
content words, chosen among all passages in play.

Verification can be given a time limit: the judge then scores in small batches until the limit,
and a citation it did not get to is removed (never shown unchecked); the sentences are marked
unsupported and ``timed_out`` is set on the caller's `VerifyClock`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from openscholar.answer import Reference, Sentence
from openscholar.judges.lexical import content_words
from openscholar.judges.protocol import SupportJudge

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


def render(sentences: list[Sentence], paragraphs: list[int]) -> str:
    """Text with citations written ``[n]`` before the sentence's final punctuation."""
    paras: dict[int, list[str]] = {}
    for s, p in zip(sentences, paragraphs, strict=True):
        body = s.text
        if s.citations:
            marks = "".join(f"[{c}]" for c in s.citations)
            m = re.match(r"^(.*?)([.!?]*)$", body, re.DOTALL)
            assert m is not None
            body = f"{m.group(1).rstrip()} {marks}{m.group(2)}"
        paras.setdefault(p, []).append(body)
    return "\n\n".join(" ".join(v) for _, v in sorted(paras.items()))


def passage_text(ref: Reference) -> str:
    """What the judge reads for a reference: title line, then the text."""
    return f"{ref.title}\n{ref.text}" if ref.title else ref.text


def verify(
    text: str,
    references: Mapping[int, Reference],
    judge: SupportJudge | None,
    *,
    threshold: float = 0.5,
    attribute: bool = True,
    max_citations: int = 3,
    candidates: int = 5,
    clock: VerifyClock | None = None,
) -> tuple[str, list[Sentence]]:
    """Checked text and sentences. With ``judge=None`` only unknown ids are removed."""
    clock = clock or VerifyClock()
    parsed = parse_sentences(text)
    sentences: list[Sentence] = []
    for ps in parsed:
        valid = [c for c in ps.citations if c in references]
        sentences.append(Sentence(text=ps.text, citations=valid, removed=[c for c in ps.citations if c not in references],
                                  supported=bool(valid) and judge is None))
    if judge is not None and references:
        checkable = [i for i, s in enumerate(sentences) if len(s.text.split()) >= _MIN_WORDS or s.citations]
        scores: dict[int, dict[int, float]] = {i: {} for i in checkable}
        # Phase 1: the citations the model wrote.
        _score(judge, sentences, references, [(i, c) for i in checkable for c in sentences[i].citations], scores, clock)
        for i in checkable:
            s, sc = sentences[i], scores[i]
            s.support = {c: round(sc[c], 4) for c in s.citations if c in sc}
            kept = [c for c in s.citations if sc.get(c, -1.0) >= threshold]  # unscored (out of time): removed
            s.removed += [c for c in s.citations if c not in kept]
            s.citations = sorted(kept, key=lambda c: -sc[c])[:max_citations]
        # Phase 2: post-hoc attribution over every passage in play for sentences left unsupported.
        if attribute and not clock.expired():
            orphans = [i for i in checkable if not sentences[i].citations]
            # Every passage in play is a candidate; the judge reads the ``candidates`` closest by words.
            todo: list[tuple[int, int]] = []
            for i in orphans:
                words = content_words(sentences[i].text)
                ranked = sorted((r for r in references if r not in scores[i]),
                                key=lambda r: (-_overlap(words, references[r]), r))
                todo.extend((i, r) for r in ranked[:candidates])
            _score(judge, sentences, references, todo, scores, clock)
            for i in orphans:
                sc = scores[i]
                best = max(sc, key=lambda r: sc[r]) if sc else None
                if best is not None and sc[best] >= threshold:
                    sentences[i].citations = [best]
                    sentences[i].support[best] = round(sc[best], 4)
                    sentences[i].attributed = True
        for i in checkable:
            sentences[i].supported = bool(sentences[i].citations)
    return render(sentences, [p.paragraph for p in parsed]), sentences


def _score(
    judge: SupportJudge,
    sentences: list[Sentence],
    references: Mapping[int, Reference],
    pairs: list[tuple[int, int]],
    into: dict[int, dict[int, float]],
    clock: VerifyClock,
) -> None:
    """Judge ``pairs`` in batches until the clock runs out; unscored pairs stay out of ``into``."""
    for start in range(0, len(pairs), JUDGE_BATCH):
        if clock.expired():
            return
        batch = pairs[start : start + JUDGE_BATCH]
        values = judge.score([(sentences[i].text, passage_text(references[r])) for i, r in batch])
        for (i, r), v in zip(batch, values, strict=True):
            into[i][r] = float(v)


def _overlap(words: set[str], ref: Reference) -> float:
    return len(words & content_words(f"{ref.title} {ref.text}")) / len(words) if words else 0.0
