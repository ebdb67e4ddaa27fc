"""BM25 with bm25s: the embedded default sparse backend (numpy sparse matrices, no server).

Scores use Lucene's BM25 variant (``method="lucene"``), English Snowball stemming and English
stopwords: the setup behind bm25s' published BEIR figures (SciFact nDCG@10 68.7).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datastore.datastore import Datastore
from retriever.config import SparseConfig
from retriever.protocols import Hit
from retriever.sparse.protocol import atomic_dir, datastore_stamp, index_dir, index_text, is_current

log = logging.getLogger(__name__)

BACKEND = "bm25s"
IDS = "passage_ids.npy"


# bm25s' defaults: the setup behind its published BEIR figures.
DEFAULT_K1 = 1.5
DEFAULT_B = 0.75


def _params(config: SparseConfig) -> dict[str, Any]:
    return {
        "k1": config.k1 if config.k1 is not None else DEFAULT_K1,
        "b": config.b if config.b is not None else DEFAULT_B,
        "stemmer": config.stemmer,
        "stopwords": config.stopwords,
    }


class BM25sRetriever:
    """BM25 over a datastore's passages with an on-disk bm25s index under ``<root>/sparse/bm25s``."""

    stage = "bm25"

    def __init__(self, datastore: Datastore, config: SparseConfig | None = None, *, build: bool = True) -> None:
        self.datastore = datastore
        self.config = config or SparseConfig()
        self.directory = index_dir(datastore.root, BACKEND)
        self._stamp = datastore_stamp(datastore, BACKEND, _params(self.config))
        if not is_current(self.directory, self._stamp):
            if not build:
                from retriever.errors import RetrieverError

                raise RetrieverError(
                    f"the bm25s index of {datastore.root} is missing or older than its passages",
                    hint="run `openscholar datastore build` (or add/delete) again, or allow building on open",
                )
            self.build_index(datastore, self.config)
        self._stemmer = _stemmer(self.config.stemmer)
        self._model: Any = None
        self._ids: np.ndarray | None = None

    # -- index ----------------------------------------------------------------------------------
    @classmethod
    def build_index(cls, datastore: Datastore, config: SparseConfig | None = None) -> Path:
        """(Re)build the index from the datastore's live passages; returns its directory."""
        import bm25s

        config = config or SparseConfig()
        directory = index_dir(datastore.root, BACKEND)
        params = _params(config)
        stamp = datastore_stamp(datastore, BACKEND, params)
        ids: list[int] = []
        texts: list[str] = []
        for p in datastore.iter_passages():
            ids.append(p.passage_id)
            texts.append(index_text(p))
        log.info("indexing %d passages with bm25s into %s", len(texts), directory)
        with atomic_dir(directory, stamp) as tmp:
            np.save(tmp / IDS, np.asarray(ids, dtype=np.int64))
            if texts:
                tokens = bm25s.tokenize(
                    texts, stopwords=config.stopwords or [], stemmer=_stemmer(config.stemmer), show_progress=False
                )
                model = bm25s.BM25(k1=params["k1"], b=params["b"], method="lucene")
                model.index(tokens, show_progress=False)
                model.save(str(tmp), show_progress=False)
        return directory

    def _load(self) -> tuple[Any, np.ndarray]:
        if self._model is None or self._ids is None:
            import bm25s

            ids = np.load(self.directory / IDS)
            self._model = bm25s.BM25.load(str(self.directory), show_progress=False) if len(ids) else None
            self._ids = ids
        return self._model, self._ids

    # -- search ---------------------------------------------------------------------------------
    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        import bm25s

        model, ids = self._load()
        out: list[list[Hit]] = [[] for _ in queries]
        if model is None or k <= 0 or not queries:
            return out
        tokens = bm25s.tokenize(
            list(queries), stopwords=self.config.stopwords or [], stemmer=self._stemmer,
            return_ids=False, show_progress=False,
        )
        vocab = model.vocab_dict
        # bm25s rejects queries with no indexed token; those simply have no hits.
        rows = [i for i, toks in enumerate(tokens) if any(t in vocab for t in toks)]
        if not rows:
            return out
        kk = min(k, len(ids))
        docs, scores = model.retrieve(
            [[t for t in tokens[i] if t in vocab] for i in rows], k=kk, show_progress=False, n_threads=1
        )
        for row, doc_row, score_row in zip(rows, docs, scores, strict=True):
            pairs = [(int(ids[d]), float(s)) for d, s in zip(doc_row, score_row, strict=True) if s > 0]
            passages = {p.passage_id: p for p in self.datastore.get([pid for pid, _ in pairs])}
            out[row] = [Hit(passages[pid], s, {self.stage: s}) for pid, s in pairs if pid in passages]
        return out


def _stemmer(language: str | None) -> Any:
    if not language:
        return None
    import Stemmer

    return Stemmer.Stemmer(language)
