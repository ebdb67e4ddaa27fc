"""The ``VectorIndex`` protocol, the ``VectorSource`` it re-scores from, and helpers shared by backends.

One index covers a whole datastore. Vectors are added in batches under *global* int64 ids (part
start + local id); searches score by inner product on the vectors as given (the caller decides
whether they are normalized: the reference's contriever vectors are not) and skip deleted ids
inside FAISS through an ``IDSelector`` built from the tombstone map, so deletions never cost
``k + len(deleted)``. This module imports no backend; the registry lives in ``registry.py``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import faiss
import numpy as np

from datastore.errors import DatastoreCorrupted, DatastoreError

META = "index.json"
FORMAT = 2


@runtime_checkable
class VectorSource(Protocol):
    """Stored vectors by global id, for exact re-scoring (fp16 memory maps of the parts; the datastore's
    is ``datastore.part_vectors.PartVectors``)."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def rows(self, ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows of ``ids`` (int64, ascending), in the stored dtype, shape (len(ids), dim); written into
        ``out[:len(ids)]`` (and that view returned) when given, so a caller can reuse one buffer."""
        ...

    def prefetch(self, ids: np.ndarray) -> None:
        """Start reading the rows of ``ids`` (int64, ascending) from disk without waiting (no-op if in RAM)."""
        ...


@runtime_checkable
class VectorIndex(Protocol):
    """One vector index over a whole datastore; see docs/dev-notes/ds-index.md for the lifecycle."""

    kind: ClassVar[str]
    dim: int

    @classmethod
    def from_config(
        cls, config: Any, *, dim: int, metric: str = "ip", workdir: Path | None = None, memory_mb: int = 2048
    ) -> VectorIndex:
        """An empty index; ``config`` is the kind's config model (None for flat)."""
        ...

    def training_size(self, n_total: int) -> int:
        """Sample rows ``train`` wants for a datastore of ``n_total`` passages (0: needs no training)."""
        ...

    def train(self, sample: np.ndarray, *, n_total: int | None = None) -> None:
        """Learn the codebook from ``sample`` (float32); no-op for flat and HNSW."""
        ...

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add a batch of vectors under global int64 ids; call as often as needed (streaming)."""
        ...

    def search(
        self, queries: np.ndarray, k: int, *, exclude: np.ndarray | Exclusion | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (nq, k), best first; padding is id -1, score -inf.

        ``exclude`` is the uint8 tombstone map (1 = deleted) or an ``Exclusion`` built from it once.
        """
        ...

    def save(self, directory: Path) -> list[str]:
        """Write the index into ``directory``; returns the file names (for the manifest's stamps)."""
        ...

    @classmethod
    def load(
        cls,
        directory: Path,
        dim: int,
        config: Any = None,
        *,
        vectors: VectorSource | np.ndarray | None = None,
        mmap: bool = True,
        workdir: Path | None = None,
        memory_mb: int = 2048,
    ) -> VectorIndex:
        """Open a saved index; ``mmap`` maps what FAISS can map so replicas share the pages."""
        ...

    @property
    def ntotal(self) -> int: ...

    def memory_bytes(self) -> int:
        """Anonymous (non-shared) bytes this index keeps in RAM; memory-mapped files excluded."""
        ...


class Exclusion:
    """Deleted ids as a FAISS selector, built once from the uint8 tombstone map and updated in O(change).

    FAISS keeps a result only if the selector accepts it, so the search visits the same candidates
    as without deletions and still returns ``k`` live hits: no ``k + len(deleted)`` over-fetch.
    """

    CHUNK = 1 << 24

    def __init__(self, tombstones: np.ndarray) -> None:
        n = len(tombstones)
        self.bits = np.zeros((n + 7) // 8, dtype=np.uint8)
        self.count = 0
        for lo in range(0, n, self.CHUNK):  # bounded memory on a 237M-byte memmap
            block = np.asarray(tombstones[lo : lo + self.CHUNK]) != 0
            self.count += int(block.sum())
            self.bits[lo // 8 : lo // 8 + (len(block) + 7) // 8] = np.packbits(block, bitorder="little")
        self._selector: Any = None

    def mark(self, ids: np.ndarray) -> None:
        """Add deleted ids (within the map's length) without rebuilding the bitmap."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) and ids.max() >= len(self.bits) * 8:
            raise DatastoreError("deleted id beyond the tombstone map", hint="rebuild the Exclusion from the grown map")
        fresh = (self.bits[ids >> 3] & (1 << (ids & 7)).astype(np.uint8)) == 0
        np.bitwise_or.at(self.bits, ids >> 3, (1 << (ids & 7)).astype(np.uint8))
        self.count += int(np.unique(ids[fresh]).size)

    def selector(self) -> Any:
        """``IDSelectorNot(IDSelectorBitmap)``, or None when nothing is deleted (no per-id test)."""
        if self.count == 0:
            return None
        if self._selector is None:
            bitmap = faiss.IDSelectorBitmap(len(self.bits), faiss.swig_ptr(self.bits))
            self._selector = faiss.IDSelectorNot(bitmap)
            self._bitmap_ref = bitmap  # the Not selector does not own it
        return self._selector


def as_exclusion(exclude: np.ndarray | Exclusion | None) -> Exclusion | None:
    """``exclude`` as an Exclusion (building one from a raw map costs O(n/8): cache it for big stores)."""
    if exclude is None or isinstance(exclude, Exclusion):
        return exclude
    arr = np.asarray(exclude) if not isinstance(exclude, np.memmap) else exclude
    if arr.ndim != 1:
        raise DatastoreError("exclude must be a 1-D uint8 tombstone map", hint="pass one byte per global id, 1 = deleted")
    return Exclusion(arr)


def as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise DatastoreError(
            f"query vectors have dim {q.shape[-1]} but the index has dim {dim}",
            hint="encode queries with the datastore's encoder",
        )
    return q


def check_batch(vectors: np.ndarray, ids: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate an ``add`` batch; returns (float32 contiguous vectors, int64 ids)."""
    if not isinstance(ids, np.ndarray) or ids.dtype != np.int64 or ids.ndim != 1:
        raise DatastoreError(
            f"ids must be a 1-D int64 numpy array, got {getattr(ids, 'dtype', type(ids).__name__)}",
            hint="pass global ids, e.g. np.arange(start, start + n, dtype=np.int64)",
        )
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise DatastoreError(
            f"vectors have shape {vectors.shape} but the index has dim {dim}",
            hint="add vectors from the datastore's encoder, one row per id",
        )
    if len(vectors) != len(ids):
        raise DatastoreError(f"{len(vectors)} vectors but {len(ids)} ids", hint="pass one id per vector row")
    if len(ids) and ids.min() < 0:
        raise DatastoreError("ids must be >= 0", hint="use global ids: part start + local id")
    return np.ascontiguousarray(vectors, dtype=np.float32), ids


def check_metric(metric: str) -> None:
    if metric != "ip":
        raise DatastoreError(f"metric {metric!r} is not supported", hint="use metric 'ip' (inner product)")


def empty_result(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)


def clean(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FAISS pads with id -1 and score -3.4e38 (or +inf); normalize padding to -inf."""
    scores = scores.astype(np.float32, copy=True)
    scores[ids < 0] = -np.inf
    return scores, ids.astype(np.int64, copy=False)


def write_meta(directory: Path, meta: dict[str, Any]) -> str:
    """Write ``index.json`` atomically (tmp + rename); returns its name."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (META + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, **meta}, indent=1, sort_keys=True))
    os.replace(tmp, directory / META)
    return META


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatastoreCorrupted(f"no index in {directory} ({META} is missing)", hint="rebuild the index") from None
    except (OSError, ValueError) as exc:
        raise DatastoreCorrupted(f"{path} is unreadable ({exc})", hint="rebuild the index") from exc
    return meta


def faiss_read(path: Path, flags: int = 0) -> Any:
    """``faiss.read_index`` whose errors become DatastoreCorrupted naming the file."""
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise DatastoreCorrupted(f"index file {path} is unreadable ({exc})", hint="rebuild the index") from exc


def read_index_file(directory: Path, file: str, kind: str, dim: int, *, mmap: bool) -> Any:
    """A one-file FAISS index (flat, HNSW) of ``kind`` and ``dim`` from ``directory``, memory-mapped when
    asked; a wrong kind or dim is refused with a hint."""
    directory = Path(directory)
    if (directory / META).exists():
        meta = read_meta(directory)
        if meta.get("kind") != kind:
            raise DatastoreError(f"{directory} holds a {meta.get('kind')} index, not {kind}", hint="use load_index()")
    index = faiss_read(directory / file, faiss.IO_FLAG_MMAP_IFC if mmap else 0)
    if index.d != dim:
        raise DatastoreError(f"index in {directory} has dim {index.d}, expected {dim}", hint="rebuild the index")
    return index


class RowScratch:
    """Buffers that exact re-scoring gathers its short-list rows into and widens them in, grown to
    the longest short list and then reused by every query.

    A fresh few-MB array per query (1000 fp16 rows = 1.5 MB, 3 MB widened) makes glibc raise its
    mmap threshold and then keep the freed blocks in the heap: a serving process grew by 70-370 MB of
    anonymous memory over 300 queries at rescore 1000 (bench/scale_sim.py, 300k and 1M), memory that
    counts per process and per replica. With these buffers it stays flat. One set serves one search
    at a time: `ScratchPool` hands them out."""

    def __init__(self) -> None:
        self.raw: np.ndarray | None = None
        self.wide: Any = None  # a float32 torch tensor

    def rows(self, n: int, dim: int, dtype: np.dtype) -> np.ndarray:
        """A (>= n, dim) buffer of ``dtype`` (its first n rows are what the caller fills)."""
        raw = self.raw
        if raw is None or len(raw) < n or raw.shape[1] != dim or raw.dtype != dtype:
            self.raw = raw = np.empty((max(n, len(raw) if raw is not None else 0), dim), dtype=dtype)
        return raw

    def dot(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """``dot_rows(rows, query)`` widening fp16 rows in the reused fp32 buffer."""
        if rows.dtype != np.float16 or not rows.flags.c_contiguous:
            return dot_rows(rows, query)
        import torch

        wide = self.wide
        if wide is None or wide.shape[0] < len(rows) or wide.shape[1] != rows.shape[1]:
            self.wide = wide = torch.empty((max(len(rows), wide.shape[0] if wide is not None else 0), rows.shape[1]),
                                           dtype=torch.float32)
        block = wide[: len(rows)]
        block.copy_(torch.from_numpy(rows))
        return (block @ torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))).numpy()


class ScratchPool:
    """`RowScratch` sets lent to searches and given back: as many sets as searches ever ran at the
    same moment, not one per thread that ever searched (a server's thread pool has dozens)."""

    def __init__(self) -> None:
        self._free: list[RowScratch] = []
        self._lock = threading.Lock()
        self.created = 0

    @contextmanager
    def take(self) -> Iterator[RowScratch]:
        with self._lock:
            if self._free:
                scratch = self._free.pop()
            else:
                scratch = RowScratch()
                self.created += 1
        try:
            yield scratch
        finally:
            with self._lock:
                self._free.append(scratch)


def dot_rows(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
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
