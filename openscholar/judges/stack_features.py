"""Cheap features of a (statement, passage) pair for the stacked support judge.

Three readers, each weak alone, disagree in useful ways:

- word overlap (plain, IDF-weighted, bigrams, best window): what the expert-attribution pairs
  reward, since experts cite the passage their sentence paraphrases;
- the packaged MiniLM as a bi-encoder: cosine of the statement with the passage and with its best
  window (paraphrase that shares few words);
- the 3-way judge trained here (`openscholar.judges.trained`): per-window supports / contradicts /
  neither, the only reader that sees a negation or a reversed direction;

plus mismatch detectors built on `openscholar.judges.perturb`'s word lists: a negation present on
one side only (in the window closest to the statement), a number of the statement absent from the
passage, a direction word whose opposite the passage uses instead.

`FEATURES` names the columns in order; `pair_features` computes them for a batch, reading each
passage window by window as `NLIJudge` does (title line dropped, at most ``windows_per_passage``
windows closest by content words). Every feature of a pair depends on that pair alone.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from openscholar.judges.lexical import content_words
from openscholar.judges.perturb import _NUMBER, _SWAP

FEATURES: tuple[str, ...] = (
    "overlap",  # share of the statement's content words in the passage
    "idf_overlap",  # the same, each word weighted by its IDF
    "bigram_overlap",  # share of the statement's content-word bigrams in the passage
    "window_overlap",  # best window's share of the statement's content words
    "cos_passage",  # bi-encoder cosine, statement vs passage body
    "cos_window",  # best window's cosine
    "logit_supports",  # trained judge, best window, logit of supports
    "logit_contradicts",  # trained judge, best window, logit of contradicts
    "logit_neither",  # trained judge, lowest neither over windows, logit
    "negation_mismatch",  # a negation cue on one side only (statement vs its closest window)
    "number_missing",  # share of the statement's quantities not found in the passage
    "direction_conflict",  # the statement's direction word absent, its opposite present
    "statement_words",  # log(1 + content words of the statement)
    "passage_words",  # log(1 + words of the passage body)
    "negation_x_support",  # negation_mismatch * logit_supports (a negated paraphrase)
    "overlap_x_cos",  # overlap * cos_window
)

_WORD = re.compile(r"[a-z0-9]+")
_NEG = re.compile(r"\b(not|no|never|none|neither|nor|without|cannot|fails?|failed|lack(?:s|ed)?|absence|absent|"
                  r"unable|unchanged|insignificant)\b|n't\b", re.IGNORECASE)
_NOT_SIGNIFICANT = re.compile(r"\bnon-?significant|\bnot (?:statistically )?significant", re.IGNORECASE)
_DIRECTION_WORDS = {a.lower(): b.lower() for a, b in _SWAP.items() if " " not in a}


def body_of(passage: str) -> str:
    """The passage without its title line (the title is not evidence)."""
    return passage.split("\n", 1)[1] if "\n" in passage else passage


def negations(text: str) -> int:
    return len(_NEG.findall(text)) + len(_NOT_SIGNIFICANT.findall(text))


def idf_overlap(statement: str, passage_words: set[str], idf: dict[str, float], default_idf: float) -> float:
    words = content_words(statement)
    if not words:
        return 0.0
    total = sum(idf.get(w, default_idf) for w in words)
    return sum(idf.get(w, default_idf) for w in words & passage_words) / total if total else 0.0


def bigrams(text: str) -> set[tuple[str, str]]:
    words = [w for w in _WORD.findall(text.lower()) if len(w) > 2]
    return set(itertools.pairwise(words))


def number_missing(statement: str, passage: str) -> float:
    nums = [m.group(1) for m in _NUMBER.finditer(statement)]
    if not nums:
        return 0.0
    present = set(re.findall(r"\d+(?:\.\d+)?", passage))
    return sum(n not in present for n in nums) / len(nums)


def direction_conflict(statement: str, passage: str) -> float:
    """1 when a direction word of the statement is absent from the passage and its opposite present."""
    s_words = set(_WORD.findall(statement.lower()))
    p_words = set(_WORD.findall(passage.lower()))
    for w in s_words & _DIRECTION_WORDS.keys():
        if w not in p_words and _DIRECTION_WORDS[w] in p_words:
            return 1.0
    return 0.0


def logit(p: float, eps: float = 1e-4) -> float:
    p = min(1 - eps, max(eps, p))
    return math.log(p / (1 - p))


def pair_features(pairs: Sequence[tuple[str, str]], window_lists: Sequence[Sequence[str]],
                  window_probs: Sequence[Sequence[tuple[float, float, float]]],
                  statement_vecs: np.ndarray, body_vecs: np.ndarray, window_vecs: Sequence[np.ndarray],
                  idf: dict[str, float], default_idf: float) -> np.ndarray:
    """The `FEATURES` matrix (n, len(FEATURES)) of ``pairs``, from the windows each passage was read
    as, the trained judge's probabilities per window and the bi-encoder vectors (unit norm)."""
    rows: list[list[float]] = []
    for k, (statement, passage) in enumerate(pairs):
        body = body_of(passage)
        words = content_words(statement)
        body_words = content_words(body)
        wins = list(window_lists[k]) or [body]
        probs = list(window_probs[k]) or [(0.0, 0.0, 1.0)]
        win_overlap = [len(words & content_words(w)) / len(words) if words else 0.0 for w in wins]
        closest = wins[int(np.argmax(win_overlap))]
        cos_p = float(statement_vecs[k] @ body_vecs[k])
        cos_w = float(np.max(window_vecs[k] @ statement_vecs[k])) if len(window_vecs[k]) else cos_p
        s = max(p[0] for p in probs)
        c = max(p[1] for p in probs)
        ne = min(p[2] for p in probs)
        ov = len(words & body_words) / len(words) if words else 0.0
        s_bi = bigrams(statement)
        neg = float((negations(statement) > 0) != (negations(closest) > 0))
        rows.append([
            ov,
            idf_overlap(statement, body_words, idf, default_idf),
            len(s_bi & bigrams(body)) / len(s_bi) if s_bi else 0.0,
            max(win_overlap),
            cos_p,
            cos_w,
            logit(s),
            logit(c),
            logit(ne),
            neg,
            number_missing(statement, body),
            direction_conflict(statement, closest),
            math.log1p(len(words)),
            math.log1p(len(body.split())),
            neg * logit(s),
            ov * cos_w,
        ])
    return np.asarray(rows, dtype=np.float64).reshape(len(pairs), len(FEATURES))


def document_frequencies(texts: Sequence[str]) -> tuple[dict[str, int], int]:
    """Content-word document frequencies of ``texts`` and their number (for an IDF table)."""
    df: dict[str, int] = {}
    for t in texts:
        for w in content_words(t):
            df[w] = df.get(w, 0) + 1
    return df, len(texts)


def idf_table(df: dict[str, int], n_docs: int, min_df: int = 5) -> tuple[dict[str, float], float]:
    """IDF of words seen in at least ``min_df`` documents (rounded, to keep the table small) and
    the IDF every rarer word gets (that of a word seen in ``min_df - 1`` documents)."""
    idf = {w: round(math.log((n_docs + 1) / (d + 1)), 3) for w, d in sorted(df.items()) if d >= min_df}
    return idf, round(math.log((n_docs + 1) / min_df), 3)


def describe(x: Any) -> str:  # pragma: no cover - debugging aid
    return ", ".join(f"{n}={v:.3f}" for n, v in zip(FEATURES, x, strict=True))
