"""A datastore opened for search (format 2): checked on open, one global index, tombstones excluded.

Opening reads the manifest, stats every file it names (re-hashing only files whose size or mtime
changed, see `datastore.integrity`), maps each part's vectors and the tombstone map, and loads the
one index. Search asks the index for k results with the tombstones excluded inside FAISS, so
deleted passages never take a slot. SQLite and FAISS read errors surface as DatastoreCorrupted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from datastore import global_index, journal
from datastore.config import DatastoreConfig
from datastore.errors import DatastoreCorrupted, DatastoreError, EncoderMismatch
from datastore.finalize import part_vectors
from datastore.index.base import Exclusion
from datastore.integrity import check_files, fix_hint
from datastore.manifest import INDEX_DIR, Manifest, PartInfo, read_manifest
from datastore.models import Passage
from datastore.part_vectors import PartVectors
from datastore.parts import VECTORS, parts_dir, read_npy_shape
from datastore.passage_store import FILE as PASSAGES
from datastore.passage_store import PassageStore
from datastore.tombstones import open_tombstones

T = TypeVar("T")

__all__ = ["Datastore", "read_manifest"]


class Datastore:
    """Read side of a datastore. Thread-safe for search and passage lookup."""

    def __init__(self, root: Path, manifest: Manifest, index: Any, vectors: PartVectors, tombstones: np.ndarray) -> None:
        self.root = root
        self.manifest = manifest
        self.parts: list[PartInfo] = list(manifest.parts)
        self.index = index
        self._vectors = vectors
        self.tombstones = tombstones
        # built once per open (O(n/8)); searches then exclude tombstones inside FAISS
        self._exclusion = Exclusion(tombstones) if manifest.deleted else None
        self._starts = np.asarray([p.start for p in self.parts], dtype=np.int64)
        self._stores = [
            PassageStore(parts_dir(root) / p.name / PASSAGES, readonly=True, offset=p.start) for p in self.parts
        ]

    @classmethod
    def open(
        cls,
        root: str | Path,
        *,
        encoder_id: str | None = None,
        dim: int | None = None,
        config: DatastoreConfig | None = None,
        verify: str | None = None,
    ) -> Datastore:
        """Open and check ``root``; ``encoder_id``/``dim`` are the query encoder's, checked against the build.

        ``verify``: ``fast`` (default) re-hashes only files whose stamp changed, ``full`` every file.
        """
        root = Path(root).expanduser()
        config = config or DatastoreConfig()
        manifest = read_manifest(root, require_complete=True)
        enc = manifest.encoder
        if (encoder_id is not None and encoder_id != enc.id) or (dim is not None and dim != enc.dim):
            raise EncoderMismatch(
                f"datastore at {root} was built with encoder {enc.id} (dim {enc.dim}) but the query encoder "
                f"is {encoder_id} (dim {dim})",
                hint="rebuild the datastore with this encoder or set embedder.model to the one it was built with",
            )
        mode = verify or config.verify
        try:
            check_files(root, manifest, "full" if mode == "full" else "fast")
        except DatastoreCorrupted as exc:
            if journal.pending(root) is None:
                raise
            raise DatastoreError(
                f"{root} is being changed by an add, delete or compact ({exc.message})",
                hint="retry when it finishes; if no process is writing it, rerun that add, delete or compact (or "
                "any `datastore delete`/`add`/`compact`) to finish or undo it",
                retryable=True,
            ) from exc
        for p in manifest.parts:
            rel = f"parts/{p.name}/{VECTORS}"
            shape = read_npy_shape(root / rel) if p.count else (0, enc.dim)
            if tuple(shape) != (p.count, enc.dim):
                raise DatastoreCorrupted(
                    f"{rel} of {root} has shape {tuple(shape)}, the manifest says ({p.count}, {enc.dim})",
                    hint=fix_hint(root, rel),
                )
        try:
            vectors = part_vectors(root, manifest.parts, enc.dim)
        except (ValueError, OSError) as exc:
            raise DatastoreCorrupted(f"a vectors file of {root} is unreadable ({exc})", hint=fix_hint(root, "parts/")) from exc
        if manifest.index is None:
            raise DatastoreCorrupted(f"the manifest of {root} names no index", hint=fix_hint(root, INDEX_DIR))
        try:
            index = global_index.load(root / INDEX_DIR, enc.dim, config, vectors)
        except RuntimeError as exc:  # FAISS read errors
            raise DatastoreCorrupted(
                f"the {manifest.index.kind} index of {root} is unreadable ({str(exc).splitlines()[0][:200]})",
                hint=fix_hint(root, INDEX_DIR + "/"),
            ) from exc
        if index.kind != manifest.index.kind or int(index.ntotal) != manifest.index.ntotal:
            raise DatastoreCorrupted(
                f"the index of {root} is {index.kind} with {index.ntotal} vectors, the manifest says "
                f"{manifest.index.kind} with {manifest.index.ntotal}",
                hint=fix_hint(root, INDEX_DIR + "/"),
            )
        tombstones = open_tombstones(root, manifest.passages)
        return cls(root, manifest, index, vectors, tombstones)

    # -- facts ----------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.manifest.encoder.dim

    @property
    def encoder_id(self) -> str:
        return self.manifest.encoder.id

    @property
    def next_id(self) -> int:
        """The global id the next added part starts at."""
        return self.manifest.next_id

    def __len__(self) -> int:
        """Live passages (deleted and duplicate ones excluded), from the manifest."""
        return self.manifest.live

    def memory_bytes(self) -> int:
        """Bytes the index holds in RAM (memory-mapped vectors and tombstones excluded)."""
        return int(self.index.memory_bytes())

    def is_deleted(self, ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """True for tombstoned ids (and for ids that do not exist)."""
        arr = np.asarray(ids, dtype=np.int64)
        out = np.ones(arr.shape, dtype=bool)
        ok = (arr >= 0) & (arr < self.manifest.passages)
        out[ok] = np.asarray(self.tombstones[arr[ok]]) != 0
        return out

    def deleted_ids(self) -> np.ndarray:
        """Every tombstoned id (deleted or duplicate), sorted (one vectorized pass over the map)."""
        return np.flatnonzero(np.asarray(self.tombstones)).astype(np.int64)

    # -- search ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k live passages: (scores, global ids), (nq, k), best first, padded with -inf / -1."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if k <= 0 or self.manifest.passages == 0:
            return np.full((len(q), max(k, 0)), -np.inf, np.float32), np.full((len(q), max(k, 0)), -1, np.int64)
        scores, ids = self.index.search(q, k, exclude=self._exclusion)
        return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)

    # -- passages -------------------------------------------------------------------------------
    def _part_of(self, gid: int) -> int:
        i = int(np.searchsorted(self._starts, gid, side="right")) - 1
        return i if i >= 0 and gid < self.parts[i].start + self.parts[i].count else -1

    def _sql(self, part: int, fn: Callable[[PassageStore], T]) -> T:
        try:
            return fn(self._stores[part])
        except sqlite3.DatabaseError as exc:
            rel = f"parts/{self.parts[part].name}/{PASSAGES}"
            raise DatastoreCorrupted(f"{rel} of {self.root} is unreadable ({exc})", hint=fix_hint(self.root, rel)) from exc

    def get(self, ids: Sequence[int]) -> list[Passage]:
        """Passages for ``ids`` in that order; unknown or deleted ids are left out."""
        want = [int(i) for i in ids]
        if not want:
            return []
        dead = self.is_deleted(np.asarray(want, dtype=np.int64))
        by_part: dict[int, list[int]] = {}
        for gid, gone in zip(want, dead.tolist(), strict=True):
            if not gone:
                part = self._part_of(gid)
                by_part.setdefault(part, []).append(gid - self.parts[part].start)
        found: dict[int, Passage] = {}
        for part, local in by_part.items():
            found.update(self._sql(part, partial(PassageStore.get, local_ids=local)))
        return [found[i] for i in want if i in found]

    def passage_ids_of_papers(self, paper_ids: Sequence[str]) -> list[int]:
        """Live passage ids of ``paper_ids``, ascending."""
        wanted = list(paper_ids)

        def lookup(store: PassageStore) -> list[int]:
            return store.ids_of_papers(wanted)

        ids = [i for n in range(len(self.parts)) for i in self._sql(n, lookup)]
        if not ids:
            return []
        arr = np.asarray(sorted(ids), dtype=np.int64)
        return arr[~self.is_deleted(arr)].tolist()

    def iter_passages(self, start: int = 0, stop: int | None = None) -> Iterator[Passage]:
        """Live passages with ids in [start, stop), in id order, streamed part by part."""
        stop = self.manifest.passages if stop is None else min(stop, self.manifest.passages)
        for n, p in enumerate(self.parts):
            lo, hi = max(start, p.start), min(stop, p.start + p.count)
            if lo >= hi:
                continue
            dead = np.asarray(self.tombstones[lo:hi]) != 0
            try:
                for passage in self._stores[n].iter_passages(lo - p.start, hi - p.start):
                    if not dead[passage.passage_id - lo]:
                        yield passage
            except sqlite3.DatabaseError as exc:
                rel = f"parts/{p.name}/{PASSAGES}"
                raise DatastoreCorrupted(f"{rel} of {self.root} is unreadable ({exc})", hint=fix_hint(self.root, rel)) from exc

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored passage vectors (float32) for ``ids``, in that order; zeros for unknown ids."""
        gids = np.asarray(ids, dtype=np.int64).ravel()
        known = self._vectors.holds(gids)
        out = np.zeros((len(gids), self._vectors.dim), dtype=np.float32)
        out[known] = self._vectors[gids[known]]
        return out

    def close(self) -> None:
        for s in self._stores:
            s.close()
