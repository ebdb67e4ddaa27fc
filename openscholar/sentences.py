"""Sentence splitting with character spans, so a quote can always be cut verbatim from its passage.

``sentence_spans(text)`` returns ``(start, end)`` offsets into ``text`` itself (never into a
normalised copy): ``text[start:end]`` is the sentence, stripped of surrounding whitespace. A
boundary is a ``.``, ``!`` or ``?`` (optionally followed by closing quotes or brackets) then
whitespace then an upper-case letter, digit or opening bracket, unless the word before the period
is a scientific abbreviation (``et al.``, ``e.g.``, ``Fig.``), an initial (``J. Smith``) or a
decimal. Scientific abstracts also put section labels in capitals ("RESULTS:"); those stay with
the sentence that follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOUNDARY = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c(\[]?[A-Z0-9\u0391-\u03a9])")
_ABBREVIATIONS = frozenset(
    ["al", "e.g", "i.e", "fig", "figs", "eq", "eqs", "ref", "refs", "vs", "approx", "ca", "cf", "dr", "mr", "mrs", "ms", "prof", "no", "nos", "vol", "pp", "ed", "eds", "resp", "sp", "spp", "var", "viz", "st", "jr", "sr", "inc", "ltd", "co", "corp", "dept", "est", "min", "max", "mol", "wt", "temp", "conc"]
)
_MIN_CHARS = 2


@dataclass(frozen=True)
class Span:
    """A sentence of a text: ``text[start:end] == sentence``."""

    start: int
    end: int
    text: str


def _is_abbreviation(text: str, dot: int) -> bool:
    """True when the period at ``dot`` ends an abbreviation, an initial or a number, not a sentence."""
    if text[dot] != ".":
        return False
    m = re.search(r"([A-Za-z][A-Za-z.]*)$", text[:dot])
    if m is None:
        return False
    word = m.group(1)
    if word.lower().rstrip(".") in _ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isupper():  # an initial ("J. Smith", "Smith J. A.") ...
        before = re.search(r"(\S+)\s+$", text[: dot - 1])
        # ... unless a lower-case word comes before it: "vitamin D." and "hepatitis B." end sentences
        return before is None or not before.group(1)[:1].islower()
    return False


def sentence_spans(text: str) -> list[Span]:
    """The sentences of ``text`` with their character offsets in ``text``."""
    spans: list[Span] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if _is_abbreviation(text, m.start()):
            continue
        end = m.start() + 1
        while end < len(text) and text[end] in "\"'\u201d\u2019)]":
            end += 1
        _add(text, start, end, spans)
        start = m.end()
    _add(text, start, len(text), spans)
    return spans


def _add(text: str, start: int, end: int, spans: list[Span]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end - start >= _MIN_CHARS:
        spans.append(Span(start, end, text[start:end]))


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see `sentence_spans`)."""
    return [s.text for s in sentence_spans(text)]


def windows(spans: list[Span], size: int = 2) -> list[tuple[int, int]]:
    """Runs of ``size`` consecutive sentences as (first index, last index + 1), stride 1; the whole
    list when it is that short. The unit a support judge reads: a claim's evidence often spans a
    sentence and its neighbour."""
    if not spans:
        return []
    if len(spans) <= size:
        return [(0, len(spans))]
    return [(i, i + size) for i in range(len(spans) - size + 1)]
