"""The parts' fp16 vectors seen as one array indexed by global id (the index's `VectorSource`).

IVF-PQ re-scores its short list exactly from these rows; finalize trains and fills the index from
them and ``Datastore.vectors`` reads them. Each part's ``vectors.f16.npy`` is memory-mapped, so only
the rows asked for are paged in; ``prefetch`` queues those reads all at once beforehand
(``datastore.readahead``).

An id that no part holds is an error everywhere but ``prefetch`` (which is only advice): the ids
come from the index or from the manifest, so one the parts lack means the index and the parts do
not match, and a zero row would score as a silent, wrong hit. ``holds`` tells a caller that takes
arbitrary ids (``Datastore.vectors``) which ones are known.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from datastore.errors import DatastoreCorrupted, DatastoreError
from datastore.readahead import RowReadahead


class PartVectors:
    """Rows of several (n_i, dim) arrays (memmaps of the parts) under global ids ``start_i + local``.

    ``parts`` is ``[(start, array), ...]`` in any order; parts must not overlap, may be empty (a
    datastore part with no passages left) and may leave gaps (ids in a gap are held by no part).
    ``dim`` is required when ``parts`` is empty and, when given, every part must have it. ``arrays``,
    ``starts`` and ``ends`` list the non-empty parts by start.
    """

    def __init__(self, parts: Sequence[tuple[int, np.ndarray]], dim: int | None = None) -> None:
        parts = sorted(parts, key=lambda p: int(p[0]))
        if not parts and dim is None:
            raise DatastoreError("no vectors given", hint="pass at least one (start, array) part, or dim=")
        bad = [(int(s), a.shape) for s, a in parts if a.ndim != 2]
        if bad:
            raise DatastoreError(f"parts must be (n, dim) arrays, got shapes {bad}", hint="pass 2-D arrays")
        dims = sorted({int(a.shape[1]) for _, a in parts} | ({dim} if dim is not None else set()))
        if len(dims) != 1:
            raise DatastoreError(
                f"parts have vector dims {dims}" + (f" but dim {dim} was asked" if dim is not None else ""),
                hint="every part must be built with the same encoder: rebuild the odd part",
            )
        self.dim = dims[0]
        empty_dtype = parts[0][1].dtype if parts else np.dtype(np.float16)
        parts = [(s, a) for s, a in parts if len(a)]  # an empty part holds no id: left out of the lookup
        self.arrays = [a for _, a in parts]
        self.starts = np.array([int(s) for s, _ in parts], dtype=np.int64)
        self.ends = self.starts + np.array([len(a) for a in self.arrays], dtype=np.int64)
        if len(parts) and self.starts[0] < 0:
            raise DatastoreError(f"a part starts at global id {self.starts[0]}", hint="global ids start at 0")
        overlap = np.flatnonzero(self.starts[1:] < self.ends[:-1])
        if len(overlap):
            i = int(overlap[0])
            raise DatastoreError(
                f"parts overlap: ids {self.starts[i]}..{self.ends[i] - 1} and {self.starts[i + 1]}..{self.ends[i + 1] - 1}",
                hint="give each part its own range of global ids (start = previous start + previous count)",
            )
        dtypes = {a.dtype for a in self.arrays}
        if len(dtypes) > 1:
            raise DatastoreError(f"parts hold vectors of dtypes {sorted(map(str, dtypes))}", hint="store every part as float16")
        self.dtype: np.dtype = dtypes.pop() if dtypes else np.dtype(empty_dtype)
        self._readahead: list[RowReadahead] | None = None  # opened on the first prefetch

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.dim)

    def __len__(self) -> int:
        """One past the highest id held (the parts are contiguous in a datastore: its passage count)."""
        return int(self.ends[-1]) if len(self.ends) else 0

    def holds(self, ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """A bool per id (any order): whether a part holds it."""
        gids = np.asarray(ids, dtype=np.int64).ravel()
        which = np.searchsorted(self.starts, gids, side="right") - 1
        known = which >= 0
        known[known] = gids[known] < self.ends[which[known]]
        return known

    def rows(self, ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows of ``ids`` (ascending: one block per part; any order works) in the stored dtype (the
        index's `VectorSource` protocol). Into ``out[:len(ids)]`` when given, that view returned: no row
        buffer is allocated per call (the re-scoring scratch buffers rely on it). An id no part holds
        raises ``DatastoreCorrupted``."""
        gids = np.asarray(ids, dtype=np.int64).ravel()
        if out is None:
            dest = np.empty((len(gids), self.dim), dtype=self.dtype)
        else:
            if out.ndim != 2 or out.shape[0] < len(gids) or out.shape[1] != self.dim or out.dtype != self.dtype:
                raise DatastoreError(
                    f"out is {out.dtype} {out.shape}, {len(gids)} rows need ({len(gids)}+, {self.dim}) {self.dtype}",
                    hint="size the buffer with RowScratch.rows(n, dim, dtype)",
                )
            dest = out[: len(gids)]
        which = np.searchsorted(self.starts, gids, side="right") - 1
        for p, a, b in part_blocks(which):
            local = gids[a:b] - self.starts[p] if p >= 0 else None
            if local is None or int(local.max()) >= len(self.arrays[p]):
                raise self._unknown(gids)
            # validated above, so mode="clip" only spares np.take the copy that mode="raise" makes with out=
            np.take(self.arrays[p], local, axis=0, out=dest[a:b], mode="clip")
        return dest

    def __getitem__(self, ids: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """Rows for ``ids`` in that order (any order, repeats allowed), in the stored dtype; an int gives
        one row. Read in ascending id order (kinder to the page cache). Unknown ids raise."""
        if isinstance(ids, (int, np.integer)):
            return self.rows(np.array([int(ids)], dtype=np.int64))[0]
        gids = np.asarray(ids, dtype=np.int64).ravel()
        order = np.argsort(gids, kind="stable")
        if bool((order == np.arange(len(gids))).all()):  # already ascending (finalize's training sample)
            return self.rows(gids)
        out = np.empty((len(gids), self.dim), dtype=self.dtype)
        out[order] = self.rows(gids[order])
        return out

    def range(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start..stop-1`` (one part or several), in the stored dtype; a view when one part holds them."""
        if stop <= start:
            return np.empty((0, self.dim), dtype=self.dtype)
        p = int(np.searchsorted(self.starts, start, side="right")) - 1
        if p >= 0 and stop <= self.ends[p]:
            lo = start - int(self.starts[p])
            return np.asarray(self.arrays[p][lo : lo + stop - start])
        return self.rows(np.arange(start, stop, dtype=np.int64))

    def prefetch(self, ids: np.ndarray) -> None:
        """Queue disk reads of the rows of ``ids`` (ascending) without waiting; ids no part holds are
        skipped (this is advice: the ``rows`` call that follows reports them)."""
        if self._readahead is None or len(self._readahead) != len(self.arrays):
            self._readahead = [RowReadahead(a) for a in self.arrays]
        gids = np.asarray(ids, dtype=np.int64).ravel()
        which = np.searchsorted(self.starts, gids, side="right") - 1
        for p, a, b in part_blocks(which):
            if p >= 0:
                local = gids[a:b] - self.starts[p]
                self._readahead[p].rows(local[local < len(self.arrays[p])])

    def _unknown(self, gids: np.ndarray) -> DatastoreCorrupted:
        bad = gids[~self.holds(gids)]
        held = int((self.ends - self.starts).sum())
        return DatastoreCorrupted(
            f"{len(bad)} vector id(s) held by no part, e.g. {bad[:5].tolist()} (the parts hold {held} ids below {len(self)})",
            hint="the index and the parts do not match: `openscholar datastore verify` names the changed file "
            "and how to rebuild it",
        )

def part_blocks(which: np.ndarray) -> list[tuple[int, int, int]]:
    """``(part, start, stop)`` runs of equal values in ``which`` (the part of each of ascending ids)."""
    if not len(which):
        return []
    cuts = [0, *(np.flatnonzero(np.diff(which)) + 1).tolist(), len(which)]
    return [(int(which[a]), a, b) for a, b in itertools.pairwise(cuts)]
