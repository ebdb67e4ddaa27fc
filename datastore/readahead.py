"""Start reading scattered rows of a memory-mapped ``.npy`` from disk all at once, before gathering them.

Gathering rows through a memory map takes one page fault per row that is not in the page cache,
one at a time (queue depth 1), and each fault reads around the row (readahead: ~1.2 GB pulled in
for 1000 random rows of a 1.5 GB file). ``POSIX_FADV_WILLNEED`` on each row's bytes queues exactly
those reads without waiting for them, so the device serves them in parallel and the gather that
follows finds them cached: 1000 cold rows of 1.5 KB 1163 ms -> 13 ms on this VM's virtual disk
(docs/dev-notes/rescore-io.md). The result is the same bytes; only when they are read changes.
"""

from __future__ import annotations

import mmap
import os
import weakref

import numpy as np

PAGE = mmap.PAGESIZE


class RowReadahead:
    """``POSIX_FADV_WILLNEED`` for rows of one memory-mapped 2-D array (no-op for in-RAM arrays).

    Only a memmap as ``np.load(..., mmap_mode="r")`` returns it qualifies (its ``base`` is the
    mapping itself): a slice of one keeps the parent's ``offset``, so its file offsets are unknown.
    """

    def __init__(self, array: np.ndarray) -> None:
        self.fd = -1
        if (
            hasattr(os, "posix_fadvise")
            and isinstance(array, np.memmap)
            and isinstance(array.base, mmap.mmap)
            and array.filename
            and array.ndim == 2
            and array.flags.c_contiguous
        ):
            self.fd = os.open(array.filename, os.O_RDONLY)
            self.offset = int(array.offset)
            self.row_bytes = int(array.strides[0])
            weakref.finalize(self, os.close, self.fd)

    @property
    def active(self) -> bool:
        return self.fd >= 0

    def rows(self, local: np.ndarray) -> int:
        """Queue reads of rows ``local`` (int64); returns the number of ranges advised.

        Rows whose pages touch or overlap are advised as one range, so a dense run is one call.
        """
        if self.fd < 0 or not len(local):
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
            os.posix_fadvise(self.fd, a, b - a, os.POSIX_FADV_WILLNEED)
        return len(lo)
