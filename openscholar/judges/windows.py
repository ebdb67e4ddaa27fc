"""Evidence windows: a passage cut into runs of consecutive sentences, the unit the judge reads.

Scoring a statement against short windows (and taking the best) keeps the cross-encoder's input
short (fast on CPU) and matches how SciFact labels evidence: by rationale sentences.
"""

from __future__ import annotations

import re

from openscholar.judges.lexical import content_words

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(" ".join(text.split())) if s.strip()]


def windows(text: str, size: int = 2) -> list[str]:
    """Runs of ``size`` consecutive sentences, stride 1 (the whole text if it is that short)."""
    sents = split_sentences(text)
    if len(sents) <= size:
        return [" ".join(sents)] if sents else []
    return [" ".join(sents[i:i + size]) for i in range(len(sents) - size + 1)]


def overlap(statement_words: set[str], text: str) -> float:
    return len(statement_words & content_words(text)) / len(statement_words) if statement_words else 0.0


def best_windows(statement: str, passage: str, n: int = 2, size: int = 2) -> list[str]:
    """The ``n`` windows of ``passage`` sharing the most content words with ``statement``."""
    words = content_words(statement)
    cands = windows(passage, size)
    ranked = sorted(range(len(cands)), key=lambda i: (-overlap(words, cands[i]), i))
    return [cands[i] for i in ranked[:n]]
