"""bm25s-tokenized BM25 segments: raw term frequencies on disk, corpus-wide statistics at query time.

A segment indexes the live passages of one range of global ids. It stores what BM25 is computed
from, never a score: per term (a 64-bit hash of the bm25s token) its postings (local doc, raw tf),
and per doc its length and global id. Every array is a plain ``.npy`` memory-mapped on open, so
replicas share the page cache and the anonymous memory of a served index is a few bytes per
segment, not per passage.

Scores are bm25s' ``method="lucene"`` scores with corpus-global statistics, exact:
``idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))``, ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))``,
where N, avgdl and df count the *live* passages of all segments (tombstoned docs are dropped from
df at query time, from N and avgdl when the index is opened). So adding a segment or deleting
passages never rewrites another segment, and the scores equal those of one bm25s index built over
the same live passages (float32 rounding apart).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEGMENT_JSON = "segment.json"
TF_MAX = np.iinfo(np.uint16).max
SMALL_SEGMENT = 1 << 16  # segments of at most this many docs store local doc ids as uint16
_FILES = ("terms", "indptr", "docs", "tfs", "dl", "ids")


def term_hashes(tokens: Sequence[str]) -> np.ndarray:
    """Stable 64-bit ids of tokens (blake2b): the shared vocabulary of every segment, with no dict.

    A collision between two of the ~10^7 distinct terms of a large corpus has probability
    ~ n^2 / 2^65 ~ 3e-6: two terms would then share postings.
    """
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little") for t in tokens),
        dtype=np.uint64,
        count=len(tokens),
    )


def tokenize(texts: Sequence[str], *, stopwords: str | None, stemmer: Any) -> tuple[list[list[int]], list[str]]:
    """bm25s' tokenizer (lowercase, ``\\w\\w+``, stopwords, Snowball stemming): (token ids per text, vocab)."""
    import bm25s

    out = bm25s.tokenize(list(texts), stopwords=stopwords or [], stemmer=stemmer, return_ids=True, show_progress=False)
    vocab = [""] * len(out.vocab)
    for tok, i in out.vocab.items():
        vocab[i] = tok
    return out.ids, vocab


def query_terms(queries: Sequence[str], *, stopwords: str | None, stemmer: Any) -> list[Counter[str]]:
    """Each query's tokens with their multiplicity (a repeated token counts again, as in bm25s and Lucene)."""
    import bm25s

    toks = bm25s.tokenize(list(queries), stopwords=stopwords or [], stemmer=stemmer, return_ids=False, show_progress=False)
    return [Counter(t) for t in toks]


class SegmentWriter:
    """Accumulates tokenized batches of one id range, then writes the segment's arrays."""

    def __init__(self) -> None:
        self._hashes: list[np.ndarray] = []
        self._docs: list[np.ndarray] = []
        self._tfs: list[np.ndarray] = []
        self._dl: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []
        self.n_docs = 0

    def add(self, ids: Sequence[int], token_ids: Sequence[Sequence[int]], vocab: Sequence[str]) -> None:
        """One batch: global ids, each doc's token ids and the batch's vocabulary (id -> token)."""
        n = len(ids)
        lengths = np.fromiter((len(d) for d in token_ids), dtype=np.int64, count=n)
        flat = np.fromiter((t for d in token_ids for t in d), dtype=np.int64, count=int(lengths.sum()))
        self.add_flat(ids, lengths, flat, term_hashes(vocab))

    def add_flat(self, ids: Sequence[int], lengths: np.ndarray, flat: np.ndarray, hashes: np.ndarray) -> None:
        """One batch as arrays: tokens per doc, the concatenated token ids, and each token id's hash."""
        n = len(ids)
        doc = np.repeat(np.arange(n, dtype=np.int64), lengths)
        rank = np.empty(len(hashes), dtype=np.int64)
        order = np.argsort(hashes, kind="stable")
        rank[order] = np.arange(len(hashes))
        # (term rank, doc) pairs sorted by term hash then doc; their counts are the term frequencies.
        keys, tf = np.unique(rank[flat] * max(n, 1) + doc, return_counts=True)
        self._hashes.append(hashes[order][keys // max(n, 1)])
        self._docs.append((keys % max(n, 1) + self.n_docs).astype(np.uint32))  # narrowed on write
        self._tfs.append(np.minimum(tf, TF_MAX).astype(np.uint16))
        self._dl.append(lengths.astype(np.uint32))
        self._ids.append(np.asarray(ids, dtype=np.int64))
        self.n_docs += n

    def write(self, directory: Path, *, start: int, stop: int) -> dict[str, Any]:
        """Write the segment of ids ``[start, stop)`` into ``directory``; returns its meta."""
        directory.mkdir(parents=True, exist_ok=True)
        hashes = np.concatenate(self._hashes) if self._hashes else np.zeros(0, np.uint64)
        # Each batch is sorted by (hash, doc) and batches come in doc order: a stable sort by hash
        # merges the runs into (hash, doc) order.
        order = np.argsort(hashes, kind="stable")
        hashes = hashes[order]
        docs = (np.concatenate(self._docs) if self._docs else np.zeros(0, np.uint32))[order]
        tfs = (np.concatenate(self._tfs) if self._tfs else np.zeros(0, np.uint16))[order]
        del order
        if self.n_docs <= SMALL_SEGMENT:  # local doc ids fit 16 bits: 4 bytes per posting with the tf
            docs = docs.astype(np.uint16)
        terms, first = np.unique(hashes, return_index=True)
        indptr = np.append(first, len(hashes)).astype(np.int64)
        dl = np.concatenate(self._dl) if self._dl else np.zeros(0, np.uint32)
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, np.int64)
        for name, arr in zip(_FILES, (terms, indptr, docs, tfs, dl, ids), strict=True):
            np.save(directory / f"{name}.npy", arr)
        meta = {
            "start": start, "stop": stop, "docs": len(ids), "terms": len(terms),
            "postings": len(docs), "total_len": int(dl.sum(dtype=np.int64)),
        }  # fmt: skip
        (directory / SEGMENT_JSON).write_text(json.dumps(meta), encoding="utf-8")
        return meta


@dataclass
class Segment:
    """One segment opened read-only: memory-mapped arrays plus its tombstone mask, if any."""

    directory: Path
    start: int
    stop: int
    n_docs: int
    total_len: int
    terms: np.ndarray
    indptr: np.ndarray
    docs: np.ndarray
    tfs: np.ndarray
    dl: np.ndarray
    ids: np.ndarray
    dead: np.ndarray | None = None  # bool per local doc, only when some of its docs are deleted

    @classmethod
    def open(cls, directory: Path, *, mmap: bool = True) -> Segment:
        meta = json.loads((directory / SEGMENT_JSON).read_text(encoding="utf-8"))
        # Plain ndarray views of the maps (np.memmap's __getitem__ costs ~10 us per slice).
        arrays = {name: np.asarray(np.load(directory / f"{name}.npy", mmap_mode="r" if mmap else None)) for name in _FILES}
        return cls(directory, int(meta["start"]), int(meta["stop"]), int(meta["docs"]), int(meta["total_len"]), **arrays)

    def apply_deleted(self, deleted: np.ndarray) -> tuple[int, int]:
        """Mark the docs among ``deleted`` (sorted global ids) dead; returns (live docs, live length)."""
        lo, hi = np.searchsorted(deleted, [self.start, self.stop])
        mine = deleted[lo:hi]
        self.dead = None
        if len(mine) and self.n_docs:
            local = _exact(self.ids, mine)
            if len(local):
                self.dead = np.zeros(self.n_docs, dtype=bool)
                self.dead[local] = True
                return self.n_docs - len(local), self.total_len - int(self.dl[local].sum(dtype=np.int64))
        return self.n_docs, self.total_len

    def locate(self, hashes: np.ndarray) -> np.ndarray:
        """Index of each term hash in this segment's terms, -1 where absent."""
        if not len(self.terms):
            return np.full(len(hashes), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.terms, hashes), len(self.terms) - 1)
        return np.where(np.asarray(self.terms[pos]) == hashes, pos, -1)

    def live_df(self, pos: int) -> int:
        a, b = int(self.indptr[pos]), int(self.indptr[pos + 1])
        if self.dead is None:
            return b - a
        return int(b - a - self.dead[self.docs[a:b]].sum())

    def top_k(self, positions: Sequence[int], weights: Sequence[float], k: int, k1: float, b: float, avgdl: float) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best live docs of this segment: (scores, global ids), best first.

        ``weights`` are idf x query multiplicity per term. The per-query work and memory are the
        postings of the query's terms plus one float64 per doc of this segment (np.bincount).
        """
        doc_parts, score_parts = [], []
        for pos, w in zip(positions, weights, strict=True):
            a, b_ = int(self.indptr[pos]), int(self.indptr[pos + 1])
            docs = np.asarray(self.docs[a:b_], dtype=np.int64)
            tf = np.asarray(self.tfs[a:b_], dtype=np.float64)
            if self.dead is not None:
                live = ~self.dead[docs]
                docs, tf = docs[live], tf[live]
            norm = k1 * ((1.0 - b) + b * np.asarray(self.dl[docs], dtype=np.float64) / avgdl)
            doc_parts.append(docs)
            score_parts.append(w * tf / (tf + norm))
        if not doc_parts:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        docs = np.concatenate(doc_parts)
        scores = np.concatenate(score_parts)
        if len(docs) * 8 < self.n_docs:  # few postings: aggregate them sparsely
            local, inv = np.unique(docs, return_inverse=True)
            total = np.bincount(inv, weights=scores)
        else:
            dense = np.bincount(docs, weights=scores, minlength=self.n_docs)
            local = np.flatnonzero(dense)
            total = dense[local]
        if len(local) > k:
            best = np.argpartition(-total, k - 1)[:k]
            local, total = local[best], total[best]
        return total, np.asarray(self.ids[local], dtype=np.int64)


def _exact(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Local positions of the ``wanted`` global ids present in ``ids`` (both sorted)."""
    pos = np.searchsorted(ids, wanted)
    ok = pos < len(ids)
    pos = pos[ok]
    return pos[np.asarray(ids[pos]) == wanted[ok]]


def idf(n: int, df: np.ndarray) -> np.ndarray:
    """Lucene's BM25 idf (bm25s ``method="lucene"``): ln(1 + (N - df + 0.5) / (df + 0.5))."""
    return np.log1p((n - df + 0.5) / (df + 0.5))


def search(segments: Iterable[Segment], terms: Counter[str], k: int, *, n_live: int, avgdl: float, k1: float, b: float) -> list[tuple[int, float]]:
    """Top-``k`` (global id, score) over ``segments`` for one tokenized query, best first."""
    segments = list(segments)
    if not terms or k <= 0 or n_live <= 0:
        return []
    tokens = list(terms)
    hashes = term_hashes(tokens)
    counts = np.asarray([terms[t] for t in tokens], dtype=np.float64)
    located = [seg.locate(hashes) for seg in segments]
    df = np.zeros(len(tokens), dtype=np.int64)
    for seg, pos in zip(segments, located, strict=True):
        for j in np.flatnonzero(pos >= 0):
            df[j] += seg.live_df(int(pos[j]))
    weight = counts * idf(n_live, df)
    all_s, all_i = [], []
    for seg, pos in zip(segments, located, strict=True):
        use = np.flatnonzero((pos >= 0) & (df > 0))
        if len(use):
            s, i = seg.top_k([int(pos[j]) for j in use], [float(weight[j]) for j in use], k, k1, b, avgdl)
            all_s.append(s)
            all_i.append(i)
    if not all_s:
        return []
    scores = np.concatenate(all_s)
    ids = np.concatenate(all_i)
    order = np.lexsort((ids, -scores))[:k]
    return [(int(ids[j]), float(scores[j])) for j in order]
