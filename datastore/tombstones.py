"""Tombstones and the content-hash index: what is not served, in bounded memory on disk.

``tombstones.u8`` holds one byte per global id (1 = deleted or duplicate), memory-mapped; searches
hand it to the index as the exclusion map, so a delete costs the bytes it sets and never makes
queries slower; ``datastore compact`` later drops the tombstoned ids' codes from the index (the
bytes stay set: ids are never reused). ``hashes.sqlite`` maps each content hash to the first global id that holds it (a
B-tree keyed by the hash): deduplication looks up only the new passages' hashes, so neither a
build nor an ``add`` holds a set of the corpus in RAM.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from datastore.manifest import HASHES, TOMBSTONES


def create_tombstones(root: Path, n: int) -> None:
    """A fresh all-zero tombstone file for ``n`` ids (sparse on disk until bytes are set)."""
    path = Path(root) / TOMBSTONES
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.truncate(n)
    os.replace(tmp, path)


def extend_tombstones(root: Path, n: int) -> None:
    """Grow the tombstone file to ``n`` ids; new ids are live."""
    path = Path(root) / TOMBSTONES
    with path.open("r+b") as fh:
        fh.truncate(n)


def open_tombstones(root: Path, n: int, *, writable: bool = False) -> np.ndarray:
    """The tombstone map of ``n`` ids (a shared memory map: a delete elsewhere shows at once)."""
    if n == 0:
        return np.zeros(0, dtype=np.uint8)
    return np.memmap(Path(root) / TOMBSTONES, dtype=np.uint8, mode="r+" if writable else "r", shape=(n,))


def sync(map_: np.ndarray) -> None:
    """Flush a writable tombstone map and its file to disk."""
    if isinstance(map_, np.memmap):
        map_.flush()
        fd = os.open(map_.filename, os.O_RDONLY)  # type: ignore[arg-type]
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class HashIndex:
    """``hashes.sqlite``: content hash -> first global id, on disk."""

    def __init__(self, root: Path, *, fresh: bool = False, cache_mb: int = 256) -> None:
        self.path = Path(root) / HASHES
        if fresh and self.path.exists():
            self.path.unlink()
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute(f"PRAGMA cache_size=-{cache_mb * 1024}")
        self.conn.execute("CREATE TABLE IF NOT EXISTS h (hash INTEGER PRIMARY KEY, id INTEGER NOT NULL)")
        self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS batch (hash INTEGER, id INTEGER)")

    def add(self, ids: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """Record (global id, hash) rows in id order; returns the ids whose hash was already present
        (in the index, or earlier in this batch): the duplicates."""
        if not len(ids):
            return np.zeros(0, dtype=np.int64)
        _, first = np.unique(hashes, return_index=True)
        keep = np.zeros(len(ids), dtype=bool)
        keep[first] = True
        dups = [ids[~keep]]
        c = self.conn
        c.execute("DELETE FROM batch")
        c.executemany("INSERT INTO batch VALUES (?, ?)", zip(hashes[keep].tolist(), ids[keep].tolist(), strict=True))
        seen = [r[0] for r in c.execute("SELECT b.id FROM batch b JOIN h ON h.hash = b.hash")]
        dups.append(np.asarray(seen, dtype=np.int64))
        c.execute("INSERT OR IGNORE INTO h SELECT hash, id FROM batch")
        return np.sort(np.concatenate(dups)).astype(np.int64)

    def close(self) -> None:
        self.conn.commit()
        self.conn.close()


def dedup_stream(index: HashIndex, batches: Iterator[tuple[np.ndarray, np.ndarray]], start: int) -> Iterator[np.ndarray]:
    """Duplicate global ids of a part, batch by batch (``batches`` yields local ids and hashes)."""
    for local, hashes in batches:
        yield index.add(local + start, hashes)
