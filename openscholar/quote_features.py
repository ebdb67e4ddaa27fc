"""Question-independent cues that a sentence reports a finding, for the quote scorer.

The calibrated quote score (`openscholar.quote_scorer`) reads the question against the sentence, so
it ranks topicality: an on-topic aim ("The aims of this study were ...") or background sentence
outranks the result it introduces. These features say, without the question, whether a sentence
states a result: the structured-abstract heading it opens with (RESULTS / CONCLUSIONS vs BACKGROUND /
OBJECTIVE / METHODS), the heading of the section it sits in (the last one before it in its passage),
aim or purpose phrasing, result cues (percentages, CIs, p-values, ratios, "significantly", past-tense
change verbs, "compared with"), its relative position in its passage and its length. Each is fitted
as one weight of the quote scorer's logistic head by ``openscholar train quotes``, and a manifest
names the features it was fitted with (`FEATURE_SETS`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Headings as abstracts print them: in capitals followed by a space or a colon ("RESULTS The ...",
# "CONCLUSIONS: ..."), or capitalised with a colon ("Results: ..."). Only known heading words, so an
# acronym opening a sentence ("DNA methylation ...") is no heading.
_RESULT_WORDS = r"RESULTS?|CONCLUSIONS?|FINDINGS|INTERPRETATION|MAIN RESULTS|KEY RESULTS|PRINCIPAL FINDINGS"
_SETUP_WORDS = (r"BACKGROUND|INTRODUCTION|CONTEXT|OBJECTIVES?|AIMS?|PURPOSE|GOALS?|METHODS?|DESIGN|SETTINGS?|"
                r"PARTICIPANTS|PATIENTS|SUBJECTS|INTERVENTIONS?|MEASUREMENTS?|MAIN OUTCOME MEASURES?|"
                r"MAIN OUTCOMES AND MEASURES|MATERIALS AND METHODS|PATIENTS AND METHODS|STUDY DESIGN|"
                r"DATA SOURCES|STUDY SELECTION|DATA EXTRACTION|IMPORTANCE|RATIONALE|HYPOTHESIS|SEARCH METHODS|"
                r"SELECTION CRITERIA|DATA COLLECTION AND ANALYSIS|TRIAL REGISTRATION|FUNDING|UNLABELLED")
_HEADING = re.compile(
    rf"(?:^|(?<=[.!?:]\s)|(?<=[.!?]\s\s))(?:(?P<result>{_RESULT_WORDS})|(?P<setup>{_SETUP_WORDS}))"
    rf"(?:\s+AND\s+[A-Z]+)*(?::|\s+(?=[A-Z0-9(]))")
_HEADING_TITLE = re.compile(r"(?:^|(?<=[.!?]\s))(?:(?P<result>Results?|Conclusions?|Findings|Interpretation)"
                            r"|(?P<setup>Background|Introduction|Context|Objectives?|Aims?|Purpose|Methods?|"
                            r"Design|Settings?|Participants|Patients|Materials and methods|Study design))\s*:")

_AIM = re.compile(
    r"\b(?:(?:the|our|main|primary|present)\s+)?(?:aims?|objectives?|purposes?|goals?)\s+(?:of|was|were|is|are)\b"
    r"|\bwe\s+(?:aimed|aim|sought|investigated|investigate|examined|examine|evaluated|evaluate|assessed|assess|"
    r"explored|explore|studied|hypothesi[sz]ed|hypothesi[sz]e|set out|wished|wanted|asked)\b"
    r"|\bthis\s+(?:study|review|paper|article|trial|report|work|analysis|meta-analysis)\s+(?:was|is|aims?|aimed|"
    r"examines|examined|investigates|investigated|describes|reviews|evaluates|evaluated|assesses|assessed|explores|"
    r"summari[sz]es|discusses|presents|focuses)\b"
    r"|^(?:to|in order to)\s+(?:determine|investigate|assess|evaluate|examine|explore|compare|test|identify|"
    r"describe|characteri[sz]e)\b",
    re.IGNORECASE)

_CUES = [re.compile(p, re.IGNORECASE) for p in (
    r"\d\s?%",                                               # a percentage
    r"\b(?:9[059]\s?%\s?)?(?:CI|confidence interval)\b",      # a confidence interval
    r"\bp\s?(?:[<=>\u2264\u2265]|value)\s?0?[.\u00b7]?\d",      # a p-value
    r"\b(?:a?OR|a?HR|a?RR|IRR|SMD|WMD|MD)\b\s?[=:,]?\s?\d|\b(?:odds|hazard|risk|rate)\s+ratios?\b",
    r"\bsignificant(?:ly)?\b|\bno\s+(?:significant\s+)?differences?\b",
    (r"\b(?:was|were)\s+(?:(?:positively|negatively|inversely|significantly|independently|strongly|not)\s+)?"
    r"(?:associated|correlated|linked|related)\b"),
    (r"\b(?:increased|decreased|reduced|improved|lowered|raised|elevated|attenuated|enhanced|inhibited|prevented|"
    r"abolished|restored|impaired|induced|rose|fell|declined|doubled)\b"),
    r"\bcompared\s+(?:with|to)\b|\bversus\b|\bvs\.?\s",
    (r"\b(?:we|our)\s+(?:found|find|show|showed|shown|demonstrate|demonstrated|observed|observe|report|identified|"
    r"results?|findings?|data)\b|\b(?:these|our|the)\s+(?:results|findings|data)\s+(?:suggest|indicate|show|"
    r"demonstrate|support|provide|reveal)"),
)]

FEATURES: tuple[str, ...] = ("result_heading", "setup_heading", "result_section", "setup_section", "aim",
                             "result_cues", "position", "length")
"""Every finding feature, in the order `finding_features` returns them."""

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "heading": ("result_heading", "setup_heading"),
    "section": ("result_section", "setup_section"),
    "aim": ("aim",),
    "cues": ("result_cues",),
    "position": ("position",),
    "length": ("length",),
}
"""The feature sets `openscholar train quotes` compares, each with the old two features and alone."""

DEFAULT_FINDING: tuple[str, ...] = FEATURE_SETS["position"] + FEATURE_SETS["heading"]
"""The finding features `openscholar train quotes` fits by default: the sets whose addition raised both the
5-fold cross-validated figures on the train claims and the held-apart ones (docs/dev-notes/quotes-finding.md;
length raised the first and lowered the second, and made 90-word sentences win on real passages)."""


@dataclass(frozen=True)
class SentenceContext:
    """Where a sentence sits: ``passage[start:end]`` is the sentence."""

    passage: str
    start: int
    end: int


def _heading(text: str) -> str | None:
    """'result' or 'setup' when ``text`` opens with a heading of that kind, else None."""
    m = _HEADING.match(text) or _HEADING_TITLE.match(text)
    if m is None:
        return None
    return "result" if m.group("result") else "setup"


def _section(passage: str, end: int) -> str | None:
    """The kind of the last heading in ``passage`` before ``end`` (the section the text there sits in)."""
    last, at = None, -1
    for pattern in (_HEADING, _HEADING_TITLE):
        for m in pattern.finditer(passage, 0, end):
            if m.start() > at:
                last, at = ("result" if m.group("result") else "setup"), m.start()
    return last


def result_cues(text: str) -> int:
    """How many kinds of result cue ``text`` holds (each pattern counted once)."""
    return sum(1 for p in _CUES if p.search(text))


def finding_features(text: str, context: SentenceContext | None = None) -> dict[str, float]:
    """The `FEATURES` of one sentence; without ``context`` the sentence is taken as its own passage."""
    ctx = context or SentenceContext(text, 0, len(text))
    head = _heading(text)
    section = _section(ctx.passage, ctx.end)
    n = len(ctx.passage)
    return {
        "result_heading": float(head == "result"),
        "setup_heading": float(head == "setup"),
        "result_section": float(section == "result"),
        "setup_section": float(section == "setup"),
        "aim": float(bool(_AIM.search(text))),
        "result_cues": min(result_cues(text), 3) / 3,
        "position": ctx.start / n if n > len(text) else 0.0,
        "length": math.log1p(len(text.split())) / math.log1p(60),
    }


def feature_matrix(texts: Sequence[str], contexts: Sequence[SentenceContext] | None = None,
                   names: Sequence[str] = FEATURES) -> np.ndarray:
    """``len(texts) x len(names)`` finding features (see `finding_features`)."""
    if contexts is not None and len(contexts) != len(texts):
        raise ValueError(f"{len(contexts)} contexts for {len(texts)} texts: give one context per text or none")
    rows = [finding_features(t, contexts[i] if contexts is not None else None) for i, t in enumerate(texts)]
    return np.asarray([[r[n] for n in names] for r in rows], dtype=np.float64).reshape(len(texts), len(names))
