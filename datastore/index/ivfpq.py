"""IVF-PQ with exact re-scoring: compressed codes in RAM, fp16 vectors memory-mapped on disk.

Codes cost ``m`` bytes per vector (plus an 8-byte id in the inverted lists). A query visits
``nprobe`` lists, takes the ``rescore`` best by approximate (PQ) score, and re-scores that short
list exactly against the stored vectors, which only touches ``rescore`` rows of the memory map.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import faiss
import numpy as np

from datastore.config import IVFPQConfig
from datastore.errors import DatastoreError
from datastore.index.base import as_queries, clean, empty_result

TRAIN_POINTS_PER_LIST = 64


def _pick_m(dim: int, wanted: int) -> int:
    for m in range(min(wanted, dim), 0, -1):
        if dim % m == 0:
            return m
    return 1


class IVFPQIndex:
    kind: ClassVar[str] = "ivfpq"
    FILE = "index.ivfpq.faiss"

    def __init__(
        self,
        dim: int,
        config: IVFPQConfig | None = None,
        index: faiss.Index | None = None,
        vectors: np.ndarray | None = None,
    ) -> None:
        self.dim = dim
        self.config = config or IVFPQConfig()
        self.index = index
        self.vectors = vectors  # (n, dim) fp16/fp32, usually a read-only memory map
        if self.index is not None:
            faiss.extract_index_ivf(self.index).nprobe = self.config.nprobe

    def build(self, vectors: np.ndarray) -> None:
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(x)
        nbits = self.config.nbits
        if n < 2**nbits:
            raise DatastoreError(
                f"IVF-PQ needs at least {2**nbits} vectors per shard to train, this shard has {n}",
                hint="use --index flat or hnsw for small shards, or --index auto",
            )
        nlist = self.config.nlist or int(4 * math.sqrt(n))
        nlist = max(1, min(nlist, n // 39))
        m = _pick_m(self.dim, self.config.m)
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
        # Train on a sample: k-means cost grows with n x nlist while centroid quality is already
        # good at 64 points per list (FAISS warns below 39); 256 made a 1M build take ~4x longer.
        cap = nlist * TRAIN_POINTS_PER_LIST
        sample = x if n <= cap else x[np.sort(np.random.default_rng(0).choice(n, cap, replace=False))]
        index.train(sample)
        index.add(x)
        index.nprobe = self.config.nprobe
        self.index = index
        if self.vectors is None:
            self.vectors = x.astype(np.float16)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = as_queries(queries, self.dim)
        if self.index is None or self.ntotal == 0 or k <= 0:
            return empty_result(len(q), max(k, 0))
        short = max(k, self.config.rescore)
        scores, ids = self.index.search(q, short)
        if not self.config.rescore or self.vectors is None:
            return clean(scores[:, :k], ids[:, :k])
        out_s, out_i = empty_result(len(q), k)
        for row in range(len(q)):
            cand = ids[row][ids[row] >= 0]
            if len(cand) == 0:
                continue
            order = np.argsort(cand)  # sorted reads are kinder to the page cache
            cand = cand[order]
            exact = _dot_rows(self.vectors[cand], q[row])
            top = np.argsort(-exact, kind="stable")[:k]
            out_s[row, : len(top)] = exact[top]
            out_i[row, : len(top)] = cand[top]
        return out_s, out_i

    def save(self, directory: Path) -> list[str]:
        faiss.write_index(self.index, str(directory / self.FILE))
        return [self.FILE]

    @classmethod
    def load(
        cls, directory: Path, dim: int, vectors: np.ndarray | None = None, config: IVFPQConfig | None = None, **_: object
    ) -> IVFPQIndex:
        return cls(dim, config, faiss.read_index(str(directory / cls.FILE)), vectors)

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def memory_bytes(self) -> int:
        if self.index is None:
            return 0
        ivf = faiss.extract_index_ivf(self.index)
        code = ivf.code_size
        return self.ntotal * (code + 8) + ivf.nlist * self.dim * 4


def _dot_rows(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``rows @ query`` in fp32 for fp16 (or fp32) rows.

    numpy widens float16 one element at a time (~2 ns each: 0.4 ms for 500 x 384, most of a
    query's time); torch's vectorized cast does it ~6x faster. torch is a core dependency (the
    embedder), imported lazily so that opening a datastore does not pay for it.
    """
    if rows.dtype == np.float16:
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a core dependency
            return np.asarray(rows, dtype=np.float32) @ query
        return (torch.from_numpy(np.ascontiguousarray(rows)).float() @ torch.from_numpy(query)).numpy()
    return np.asarray(rows, dtype=np.float32) @ query
