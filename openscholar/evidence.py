"""Quote-first evidence: the retrieved passages cut into sentences, the best ones kept verbatim.

Every sentence of every passage in play is scored against the question by a (question, sentence)
cross-encoder (`QuoteScorer`); quotes are then picked greedily by maximal marginal relevance
(relevance minus similarity to the quotes already picked, so five paraphrases of one finding do
not crowd out a second finding) with at most ``per_paper`` quotes from one paper, and grouped into
themed sections by clustering their embeddings. Each `Evidence` carries the reference it comes
from and its character span: ``reference.text[start:end] == quote`` always (tested), so a quote is
never a paraphrase. Ai2 ScholarQA extracts quotes with a large LLM; this needs none.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from openscholar.answer import Evidence, Reference, Section
from openscholar.judges.lexical import content_words
from openscholar.quote_features import SentenceContext
from openscholar.sentences import sentence_spans

if TYPE_CHECKING:
    from openscholar.settings import Settings

_LABEL_ONLY = re.compile(r"^[A-Z][A-Z /&-]{2,40}:?$")
# a sentence ends with . ! or ? (and maybe a closing quote or bracket); a passage cut from a longer text
# may end (or start) inside a sentence, and a quote of that fragment could drop what changes its meaning
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*$")


class QuoteScorer(Protocol):
    """Relevance of each text to the query, higher is better (any scale)."""

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class ContextualQuoteScorer(Protocol):
    """A `QuoteScorer` that also reads where each sentence sits in its passage (its position, the
    section heading above it: `openscholar.quote_features`)."""

    def score_in_context(self, query: str, texts: Sequence[str],
                         contexts: Sequence[SentenceContext] | None) -> np.ndarray: ...


class TextEmbedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Candidate:
    reference: Reference
    start: int
    end: int

    @property
    def quote(self) -> str:
        return self.reference.text[self.start:self.end]

    @property
    def context(self) -> SentenceContext:
        return SentenceContext(self.reference.text, self.start, self.end)


def candidates(refs: Sequence[Reference], *, min_words: int = 5, max_words: int = 90) -> list[Candidate]:
    """Every quotable sentence of ``refs``: long enough to say something, short enough to read, and
    whole: not the fragment a passage's chunk boundary leaves at its end (no closing punctuation) or
    at its start (begins in lower case)."""
    out: list[Candidate] = []
    for ref in refs:
        spans = sentence_spans(ref.text)
        for j, span in enumerate(spans):
            n = len(span.text.split())
            if n < min_words or n > max_words or _LABEL_ONLY.match(span.text):
                continue
            if (j == len(spans) - 1 and not _SENTENCE_END.search(span.text)) or (j == 0 and span.text[:1].islower()):
                continue
            out.append(Candidate(ref, span.start, span.end))
    return out


def paper_key(ref: Reference) -> str:
    """What "one paper" means for the per-paper cap: the paper id, else the title, else the passage."""
    return ref.paper_id or (ref.title.strip().lower() if ref.title.strip() else f"passage:{ref.id}")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def mmr_select(relevance: np.ndarray, similarity: np.ndarray, papers: Sequence[str], *, k: int, per_paper: int,
               lam: float) -> list[int]:
    """Indices picked greedily by ``lam * rel - (1 - lam) * max sim to the picked``, ``rel`` min-max
    scaled to [0, 1], at most ``per_paper`` per paper; stops at ``k``."""
    n = len(relevance)
    if n == 0:
        return []
    lo, hi = float(relevance.min()), float(relevance.max())
    rel = (relevance - lo) / (hi - lo) if hi > lo else np.ones(n)
    chosen: list[int] = []
    per: dict[str, int] = {}
    best_sim = np.zeros(n)
    while len(chosen) < k:
        score = lam * rel - (1 - lam) * best_sim
        for i in chosen:
            score[i] = -np.inf
        for i in range(n):
            if per.get(papers[i], 0) >= per_paper:
                score[i] = -np.inf
        i = int(np.argmax(score))
        if not np.isfinite(score[i]):
            break
        chosen.append(i)
        per[papers[i]] = per.get(papers[i], 0) + 1
        best_sim = np.maximum(best_sim, similarity[i])
    return chosen


def _similarity(texts: Sequence[str], embedder: TextEmbedder | None) -> np.ndarray:
    """Cosine similarity of the embeddings, or word-set Jaccard without an embedder."""
    if embedder is not None:
        vecs = np.asarray(embedder.embed(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = vecs / np.maximum(norms, 1e-9)
        return vecs @ vecs.T
    words = [content_words(t) for t in texts]
    sim = np.zeros((len(texts), len(texts)))
    for i, a in enumerate(words):
        for j, b in enumerate(words):
            sim[i, j] = len(a & b) / len(a | b) if a | b else 0.0
    return sim


def shortlist(question: str, cands: Sequence[Candidate], n: int | None) -> list[int]:
    """Indices of the ``n`` candidates sharing most of the question's content words (ties: passage
    order, i.e. retrieval rank), in their original order; all when ``n`` is None or not smaller.
    The cross-encoder then reads only these: its cost is linear in the sentences it reads, and the
    calibrated quote score weighs this same overlap heavily (`openscholar.quote_scorer`)."""
    if n is None or len(cands) <= n:
        return list(range(len(cands)))
    asked = content_words(question)
    share = [len(asked & content_words(c.quote)) / len(asked) if asked else 0.0 for c in cands]
    return sorted(sorted(range(len(cands)), key=lambda i: (-share[i], i))[:n])


def score_by_length(scorer: QuoteScorer, question: str, texts: Sequence[str],
                    contexts: Sequence[SentenceContext] | None = None) -> np.ndarray:
    """``scorer.score`` over ``texts`` fed shortest first (batches pad to their longest text), in input
    order; a `ContextualQuoteScorer` also gets each text's ``contexts``."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    fed = [texts[i] for i in order]
    if contexts is not None and isinstance(scorer, ContextualQuoteScorer):
        raw = scorer.score_in_context(question, fed, [contexts[i] for i in order])
    else:
        raw = scorer.score(question, fed)
    scored = np.asarray(raw, dtype=np.float64)
    out = np.empty(len(texts), dtype=np.float64)
    out[order] = scored
    return out


def select_evidence(question: str, refs: Sequence[Reference], scorer: QuoteScorer, *, k: int = 8,
                    per_paper: int = 2, lam: float = 0.7, min_score: float | None = None,
                    embedder: TextEmbedder | None = None, section_similarity: float = 0.45,
                    max_scored: int | None = None) -> tuple[list[Evidence], list[Section]]:
    """The quotes for ``question`` and their themed sections (see the module doc); the cross-encoder
    reads at most ``max_scored`` sentences (`shortlist`; None: every one)."""
    cands = candidates(refs)
    cands = [cands[i] for i in shortlist(question, cands, max_scored)]
    if not cands:
        return [], []
    logits = score_by_length(scorer, question, [c.quote for c in cands], [c.context for c in cands])
    keep = [i for i in range(len(cands)) if min_score is None or _sigmoid(float(logits[i])) >= min_score]
    if not keep:
        return [], []
    cands = [cands[i] for i in keep]
    logits = logits[keep]
    # MMR over the best few dozen only: similarity is quadratic and the tail is never picked.
    top = np.argsort(-logits)[: max(4 * k, 24)]
    pool = [cands[i] for i in top]
    sim = _similarity([c.quote for c in pool], embedder)
    picked = mmr_select(logits[top], sim, [paper_key(c.reference) for c in pool], k=k, per_paper=per_paper, lam=lam)
    evidence = [Evidence(reference=pool[i].reference.id, start=pool[i].start, end=pool[i].end, quote=pool[i].quote,
                         score=round(_sigmoid(float(logits[top][i])), 4)) for i in picked]
    titles = {r.id: r.title for r in refs}
    sections = themed_sections(evidence, sim[np.ix_(picked, picked)], question, threshold=section_similarity,
                               paper_titles=titles)
    return evidence, sections


def themed_sections(evidence: list[Evidence], sim: np.ndarray, question: str, *, threshold: float,
                    paper_titles: dict[int, str] | None = None) -> list[Section]:
    """Quotes clustered by similarity (average link to a section's quotes >= ``threshold``; leader
    clustering in relevance order); sections ordered by their best quote, titled by the terms their
    quotes share (`section_title`), else by the best quote's paper title (``paper_titles``: reference id
    -> title)."""
    groups: list[list[int]] = []
    for i in sorted(range(len(evidence)), key=lambda i: -evidence[i].score):
        best, best_sim = None, threshold
        for g, members in enumerate(groups):
            s = float(np.mean([sim[i, j] for j in members]))
            if s >= best_sim:
                best, best_sim = g, s
        if best is None:
            groups.append([i])
        else:
            groups[best].append(i)
    asked = content_words(question)
    sections = []
    for n, members in enumerate(groups):
        for i in members:
            evidence[i].section = n
        best_paper = (paper_titles or {}).get(evidence[members[0]].reference, "")
        sections.append(Section(title=section_title([evidence[i].quote for i in members], asked, best_paper),
                                evidence=members))
    return sections


_TOKEN = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]|[a-z]")


def section_title(quotes: list[str], asked: set[str], paper_title: str = "", terms: int = 3) -> str:
    """A section's title: up to ``terms`` terms that at least two of its quotes share (two-word phrases
    before single words, a word inside a chosen phrase not repeated), the question's own words and
    bare numbers left out. A section with no shared term (one quote, or quotes that only share the
    question's words) is named after its best quote's paper, shortened; without one, "Evidence"."""
    counts: dict[str, int] = {}
    for q in quotes:
        # one slot per token, "" for a word that may not be in a title, so phrases never span it
        words = [t if t in content_words(t) and t not in asked else "" for t in _TOKEN.findall(q.lower())]
        found = {w for w in words if w}
        found |= {f"{a} {b}" for a, b in itertools.pairwise(words) if a and b and a != b}
        for term in found:
            counts[term] = counts.get(term, 0) + 1
    shared = sorted((t for t in counts if counts[t] >= 2), key=lambda t: (-counts[t], -t.count(" "), -len(t), t))
    picked: list[str] = []
    for term in shared:
        clash = [i for i, p in enumerate(picked) if set(term.split(" ")) & set(p.split(" "))]
        if not clash:
            picked.append(term)
        elif " " in term and all(" " not in picked[i] for i in clash):
            picked[clash[0]] = term  # the phrase replaces its own words
            picked = [p for i, p in enumerate(picked) if i not in clash[1:]]
        if len(picked) == terms:
            break
    if picked:
        return ", ".join(picked).capitalize()
    words = paper_title.split()
    if words:
        short = " ".join(words[:8]).rstrip(".:;,")
        return short + ("…" if len(words) > 8 else "")
    return "Evidence"


def quote_fidelity(evidence: Sequence[Evidence], references: dict[int, Reference]) -> float:
    """Share of quotes that are exactly ``reference.text[start:end]`` (1.0 by construction)."""
    if not evidence:
        return 1.0
    ok = sum(1 for e in evidence if e.reference in references
             and references[e.reference].text[e.start:e.end] == e.quote)
    return ok / len(evidence)


def papers_of(evidence: Sequence[Evidence], references: dict[int, Reference]) -> int:
    """How many distinct papers the quotes come from."""
    return len({paper_key(references[e.reference]) for e in evidence if e.reference in references})


__all__ = ["Candidate", "ContextualQuoteScorer", "QuoteScorer", "TextEmbedder", "candidates", "mmr_select", "paper_key", "papers_of",
           "quote_fidelity", "score_by_length", "section_title", "select_evidence", "shortlist", "themed_sections"]



def build_quote_scorer(settings: Settings) -> QuoteScorer:
    """The (question, sentence) scorer of ``evidence.scorer``: 'default' is the packaged reranker with the
    calibration fitted by `openscholar train quotes` (`openscholar.quote_scorer`); any other value names
    a cross-encoder (a model under retriever/models, an HF id or a directory), used uncalibrated."""
    from openscholar.quote_scorer import CalibratedScorer, load_calibration
    from openscholar.retrieval import reranker_path
    from retriever.reranker import CrossEncoderReranker

    name = settings.evidence.scorer
    config = settings.retrieval.reranker.model_copy(update={"max_tokens": 96})
    if name != "default":
        return CrossEncoderReranker(config, reranker_path(settings, name))
    calibration = load_calibration() or {}
    base = CrossEncoderReranker(config, reranker_path(settings, str(calibration.get("base", "reranker"))))
    return CalibratedScorer(base, float(calibration.get("a", 1.0)), float(calibration.get("b", 0.0)),
                            float(calibration.get("w", 0.0)), calibration.get("finding"))
