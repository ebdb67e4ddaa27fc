"""BM25 with bm25s' tokenizer and scoring, as memory-mapped segments: the embedded sparse backend.

Scores are bm25s' ``method="lucene"`` BM25 with English Snowball stemming and English stopwords
(the setup behind bm25s' published BEIR figures, SciFact nDCG@10 68.7), computed from raw term
frequencies with corpus-wide statistics (see `retriever.sparse.segments`): the index is a list of
segments, one per range of global ids, each a set of ``.npy`` arrays opened with ``mmap_mode="r"``.

- ``add`` of ids ``[a, b)`` writes new segments over those ids only; no other segment changes.
- ``delete`` writes nothing but the stamp: tombstoned passages are dropped at query time (from the
  postings, from df, N and avgdl), so scores equal a rebuild over the live passages.
- A query touches the postings of its terms plus one float64 per doc of one segment at a time
  (``segment_passages`` bounds it), never a score vector over the corpus.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datastore.datastore import Datastore
from retriever.config import SparseConfig
from retriever.protocols import Hit, Scored, fetch_hits, scored
from retriever.sparse import segments as seg
from retriever.sparse import source
from retriever.sparse.protocol import (
    Change,
    SyncOutcome,
    atomic_dir,
    index_dir,
    index_lock,
    index_text,
    is_current,
    new_stamp,
    read_stamp,
    same_index,
    stale_error,
    write_stamp,
)

log = logging.getLogger(__name__)

BACKEND = "bm25s"
# bm25s' defaults: the setup behind its published BEIR figures.
DEFAULT_K1 = 1.5
DEFAULT_B = 0.75
TOKENIZE_BATCH = 8192


def _params(config: SparseConfig) -> dict[str, Any]:
    return {
        "k1": config.k1 if config.k1 is not None else DEFAULT_K1,
        "b": config.b if config.b is not None else DEFAULT_B,
        "stemmer": config.stemmer,
        "stopwords": config.stopwords,
        "scoring": "lucene",
        "vocab": "blake2b-64",
    }


class BM25sRetriever:
    """BM25 over a datastore's passages with memory-mapped segments under ``<root>/sparse/bm25s``."""

    stage = "bm25"

    def __init__(self, datastore: Datastore, config: SparseConfig | None = None, *, build: bool = True) -> None:
        self.datastore = datastore
        self.config = config or SparseConfig()
        self.params = _params(self.config)
        self.directory = index_dir(datastore.root, BACKEND)
        if not is_current(read_stamp(self.directory), datastore, BACKEND, self.params):
            if not build:
                raise stale_error(datastore, BACKEND)
            self.sync(datastore, self.config)
        self._stemmer = _stemmer(self.config.stemmer)
        self._segments: list[seg.Segment] | None = None
        self._n_live = 0
        self._avgdl = 1.0

    # -- index ----------------------------------------------------------------------------------
    @classmethod
    def build_index(cls, datastore: Datastore, config: SparseConfig | None = None) -> Path:
        """Build the index afresh from the datastore's live passages; returns its directory."""
        config = config or SparseConfig()
        directory = index_dir(datastore.root, BACKEND)
        params = _params(config)
        stamp = new_stamp(datastore, BACKEND, params)
        with index_lock(directory), atomic_dir(directory, stamp) as tmp:
            stamp["segments"] = _write_segments(tmp, datastore, config, 0, stamp["indexed_to"])
        log.info("bm25s index of %s: %d segments", datastore.root, len(stamp["segments"]))
        return directory

    @classmethod
    def sync(cls, datastore: Datastore, config: SparseConfig | None = None, change: Change | None = None) -> SyncOutcome:
        """Bring the index up to date with the datastore by the change only (a rebuild if it is not this one's).

        New ids since the stamp get new segments; deletions need nothing but the stamp (they are
        read from the datastore's tombstones when the index is opened). ``change`` is what the
        caller says changed; the stamp is what decides, so a missed refresh is caught up too.
        """
        config = config or SparseConfig()
        directory = index_dir(datastore.root, BACKEND)
        params = _params(config)
        with index_lock(directory):
            stamp = read_stamp(directory)
            if is_current(stamp, datastore, BACKEND, params):
                return "current"
            if not same_index(stamp, datastore, BACKEND, params) or stamp is None:
                rebuild = True
            else:
                rebuild = False
                start, stop = int(stamp["indexed_to"]), source.next_id(datastore)
                if change is not None and change.added is not None and change.added[0] < start:
                    log.warning("bm25s: change %s overlaps ids already indexed (< %d); indexing from %d", change.added, start, start)
                names = _write_segments(directory, datastore, config, start, stop) if stop > start else []
                fresh = new_stamp(datastore, BACKEND, params)
                fresh["segments"] = list(stamp.get("segments", [])) + names
                write_stamp(directory, fresh)
                _drop_unlisted(directory, fresh["segments"])
        if rebuild:
            cls.build_index(datastore, config)
            return "rebuilt"
        return "updated"

    # -- serving --------------------------------------------------------------------------------
    def _load(self) -> list[seg.Segment]:
        if self._segments is None:
            stamp = read_stamp(self.directory) or {}
            deleted = source.deleted_ids(self.datastore)
            self._segments, self._n_live, self._avgdl = open_segments(self.directory, stamp.get("segments", []), deleted)
        return self._segments

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        return [fetch_hits(self.datastore, r) for r in self.search_ids_batch(queries, k)]

    def search_ids_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Scored]]:
        out: list[list[Scored]] = [[] for _ in queries]
        if k <= 0 or not queries:
            return out
        segments = self._load()
        terms = seg.query_terms(queries, stopwords=self.config.stopwords, stemmer=self._stemmer)
        for row, counter in enumerate(terms):
            pairs = seg.search(
                segments, counter, k, n_live=self._n_live, avgdl=self._avgdl,
                k1=float(self.params["k1"]), b=float(self.params["b"]),
            )  # fmt: skip
            out[row] = scored(pairs, self.stage)
        return out

    def scores(self, query: str) -> dict[int, float]:
        """Every live passage's BM25 score for ``query`` (those > 0): for tests against a reference."""
        segments = self._load()
        counter = seg.query_terms([query], stopwords=self.config.stopwords, stemmer=self._stemmer)[0]
        pairs = seg.search(
            segments, counter, max(self._n_live, 1), n_live=self._n_live, avgdl=self._avgdl,
            k1=float(self.params["k1"]), b=float(self.params["b"]),
        )  # fmt: skip
        return dict(pairs)


def _write_segments(directory: Path, datastore: Datastore, config: SparseConfig, start: int, stop: int) -> list[str]:
    """Index the live passages with ids in ``[start, stop)`` as segments of at most ``segment_passages``."""
    docs = ((p.passage_id, index_text(p)) for p in source.iter_live(datastore, start, stop))
    return write_segments(directory, docs, config, start, stop)


def write_segments(directory: Path, docs: Iterable[tuple[int, str]], config: SparseConfig, start: int, stop: int) -> list[str]:
    """Index ``(id, text)`` pairs (ids increasing, within ``[start, stop)``) as segments under
    ``directory``; returns their names. Memory: one segment's postings while it is written."""
    stemmer = _stemmer(config.stemmer)
    names: list[str] = []
    writer = seg.SegmentWriter()
    seg_start = start
    ids: list[int] = []
    texts: list[str] = []

    def flush_batch() -> None:
        if ids:
            token_ids, vocab = seg.tokenize(texts, stopwords=config.stopwords, stemmer=stemmer)
            writer.add(ids, token_ids, vocab)
            ids.clear()
            texts.clear()

    def close_segment(seg_stop: int) -> None:
        nonlocal writer, seg_start
        flush_batch()
        if writer.n_docs:
            name = f"seg-{seg_start:012d}-{seg_stop:012d}"
            tmp = directory / f".{name}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            writer.write(tmp, start=seg_start, stop=seg_stop)
            shutil.rmtree(directory / name, ignore_errors=True)
            tmp.rename(directory / name)
            names.append(name)
        writer = seg.SegmentWriter()
        seg_start = seg_stop

    for pid, text in docs:
        if writer.n_docs + len(ids) >= config.segment_passages:
            close_segment(pid)
        ids.append(pid)
        texts.append(text)
        if len(ids) >= TOKENIZE_BATCH:
            flush_batch()
    close_segment(stop)
    return names


def open_segments(directory: Path, names: Sequence[str], deleted: np.ndarray) -> tuple[list[seg.Segment], int, float]:
    """The named segments memory-mapped, with ``deleted`` (sorted global ids) applied:
    (segments, live docs, average live doc length), the corpus statistics every score uses."""
    segments = [seg.Segment.open(directory / name) for name in names]
    n_live, total = 0, 0
    for s in segments:
        n, length = s.apply_deleted(deleted)
        n_live += n
        total += length
    return segments, n_live, (total / n_live if n_live else 1.0)


def _drop_unlisted(directory: Path, names: Sequence[str]) -> None:
    """Remove segments a crashed update left behind (never listed in the stamp, never served)."""
    keep = set(names)
    for path in directory.iterdir():
        if path.is_dir() and path.name.lstrip(".").startswith("seg-") and path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


def _stemmer(language: str | None) -> Any:
    if not language:
        return None
    import Stemmer

    return Stemmer.Stemmer(language)

