"""Start reading scattered rows of a memory-mapped ``.npy`` from disk all at once, before gathering them.

Gathering rows through a memory map takes one page fault per row that is not in the page cache,
one at a time (queue depth 1), and each fault also reads around the row (the device's readahead:
128 KB by default, 8 MB on the dev VM). ``MADV_WILLNEED`` on each row's pages queues exactly those
reads without waiting for them, so the device serves them in parallel and the gather that follows
finds them cached (docs/dev-notes/rescore-io.md has the figures). The gathered bytes are the same;
only when they are read changes.
"""

from __future__ import annotations

import mmap

import numpy as np

PAGE = mmap.PAGESIZE


class RowReadahead:
    """``MADV_WILLNEED`` for rows of one memory-mapped 2-D array (no-op for in-RAM arrays).

    Advice on a file mapping is ``POSIX_FADV_WILLNEED`` on the file: the rows' pages are read into
    the page cache asynchronously. It needs no file descriptor (a datastore can have thousands of
    parts). Only a memmap as ``np.load(..., mmap_mode="r")`` returns it qualifies (its ``base`` is
    the mapping itself): a slice of one keeps the parent's ``offset``, so its positions are unknown.
    """

    def __init__(self, array: np.ndarray) -> None:
        self.map: mmap.mmap | None = None
        self.offset = 0  # where row 0 starts in the mapping
        self.row_bytes = 0
        if (
            hasattr(mmap, "MADV_WILLNEED")
            and isinstance(array, np.memmap)
            and isinstance(array.base, mmap.mmap)
            and array.ndim == 2
            and array.flags.c_contiguous
        ):
            self.map = array.base
            self.offset = int(array.offset) % mmap.ALLOCATIONGRANULARITY
            self.row_bytes = int(array.strides[0])

    @property
    def active(self) -> bool:
        return self.map is not None

    def rows(self, local: np.ndarray) -> int:
        """Queue reads of rows ``local`` (int64); returns the number of ranges advised.

        Rows whose pages touch or overlap are advised as one range, so a dense run is one call.
        """
        if self.map is None or not len(local):
            return 0
        local = np.sort(np.asarray(local, dtype=np.int64))  # a no-op pass for the index's sorted short lists
        start = self.offset + local * self.row_bytes
        first = start // PAGE
        last = (start + self.row_bytes - 1) // PAGE
        new = np.ones(len(local), dtype=bool)
        new[1:] = first[1:] > last[:-1] + 1
        lo = first[new] * PAGE
        hi = (np.maximum.reduceat(last, np.flatnonzero(new)) + 1) * PAGE
        for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
            self.map.madvise(mmap.MADV_WILLNEED, a, min(b, len(self.map)) - a)
        return len(lo)
