"""The parts' fp16 vectors seen as one array indexed by global id (the index's `VectorSource`).

IVF-PQ re-scores its short list exactly from these rows; the router and tests read them too. Each
part's ``vectors.f16.npy`` is memory-mapped, so only the rows asked for are paged in; ``prefetch``
queues those reads all at once beforehand (``datastore.readahead``).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from datastore.index.base import part_blocks
from datastore.readahead import RowReadahead


class PartVectors:
    """Rows of several (n_i, dim) arrays under global ids ``start_i + local``."""

    def __init__(self, arrays: Sequence[np.ndarray], starts: Sequence[int], dim: int) -> None:
        self.arrays = list(arrays)
        self.starts = list(starts)
        self.dim = dim
        self.ends = [s + len(a) for s, a in zip(self.starts, self.arrays, strict=True)]
        self._starts = np.asarray(self.starts, dtype=np.int64)
        self.dtype = self.arrays[0].dtype if self.arrays else np.dtype(np.float16)
        self._readahead: list[RowReadahead] | None = None  # opened on the first prefetch

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ends[-1] if self.ends else 0, self.dim)

    def __len__(self) -> int:
        return self.shape[0]

    def part_of(self, gid: int) -> int:
        """Index of the part holding global id ``gid`` (-1 if none)."""
        i = bisect.bisect_right(self.starts, gid) - 1
        return i if i >= 0 and gid < self.ends[i] else -1

    def __getitem__(self, ids: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """Rows for ``ids`` (in that order), in the stored dtype; an int gives one row."""
        if isinstance(ids, (int, np.integer)):
            i = self.part_of(int(ids))
            if i < 0:
                raise IndexError(f"global id {ids} is out of range")
            return np.asarray(self.arrays[i][int(ids) - self.starts[i]])
        gids = np.asarray(ids, dtype=np.int64).ravel()
        out = np.zeros((len(gids), self.dim), dtype=self.dtype)
        if not len(gids):
            return out
        which = np.searchsorted(np.asarray(self.starts, dtype=np.int64), gids, side="right") - 1
        for i in np.unique(which):
            if i < 0:
                continue
            rows = np.flatnonzero(which == i)
            local = gids[rows] - self.starts[i]
            ok = local < len(self.arrays[i])
            rows, local = rows[ok], local[ok]
            order = np.argsort(local)  # sorted reads are kinder to the page cache
            out[rows[order]] = self.arrays[i][local[order]]
        return out

    def rows(self, ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows of ``ids`` (ascending) in the stored dtype (the index's `VectorSource` protocol); into
        ``out[:len(ids)]`` when given, with no array allocated per call (ids past a part's end: zeros)."""
        if out is None:
            return self[ids]
        gids = np.asarray(ids, dtype=np.int64).ravel()
        dest = out[: len(gids)]
        which = np.searchsorted(self._starts, gids, side="right") - 1
        for i, a, b in part_blocks(which):
            if i < 0:
                dest[a:b] = 0
                continue
            local = gids[a:b] - self.starts[i]
            k = int(np.searchsorted(local, len(self.arrays[i])))  # ascending: the rows the part holds come first
            np.take(self.arrays[i], local[:k], axis=0, out=dest[a : a + k], mode="clip")
            dest[a + k : b] = 0
        return dest

    def prefetch(self, ids: np.ndarray) -> None:
        """Queue disk reads of the rows of ``ids`` (ascending) without waiting; ids out of range are skipped."""
        if self._readahead is None or len(self._readahead) != len(self.arrays):
            self._readahead = [RowReadahead(a) for a in self.arrays]
        gids = np.asarray(ids, dtype=np.int64).ravel()
        if not len(gids):
            return
        which = np.searchsorted(np.asarray(self.starts, dtype=np.int64), gids, side="right") - 1
        for i in np.unique(which):
            if i < 0:
                continue
            local = gids[which == i] - self.starts[i]
            self._readahead[i].rows(local[local < len(self.arrays[i])])

    def range(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start..stop-1`` (one part or several), in the stored dtype."""
        i = self.part_of(start)
        if i >= 0 and stop <= self.ends[i]:
            return np.asarray(self.arrays[i][start - self.starts[i] : stop - self.starts[i]])
        return self[np.arange(start, stop, dtype=np.int64)]
