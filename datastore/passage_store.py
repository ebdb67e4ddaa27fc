"""Passage text and paper metadata of one part on disk (SQLite), random access by local id.

Rows are keyed by local id 0..n-1 (global id = part start + local id), so a part's file does not
depend on where the part lands in the datastore. ``hash`` (a 64-bit content hash, indexed) serves
deduplication; ``paper_id`` is indexed for deletes and paper lookups. ``text`` is stored either as
TEXT or zlib-compressed as a BLOB (the reader tells them apart by type), which halves the disk of
prose. Connections are opened per thread (SQLite objects must not cross threads), read-only and
immutable when serving.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from datastore.models import Passage

FILE = "passages.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY,
    paper_id TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    title TEXT NOT NULL,
    text BLOB NOT NULL,
    year INTEGER,
    venue TEXT,
    authors TEXT,
    url TEXT,
    citation_count INTEGER,
    extra TEXT,
    hash INTEGER NOT NULL
);
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS passages_paper ON passages(paper_id);
CREATE INDEX IF NOT EXISTS passages_hash ON passages(hash);
"""

_COLUMNS = "id, paper_id, chunk, title, text, year, venue, authors, url, citation_count, extra"


def content_hash(text: str) -> int:
    """Signed 64-bit hash of whitespace-normalized text: identical passages are stored once."""
    digest = hashlib.blake2b(" ".join(text.split()).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _decode_text(value: str | bytes) -> str:
    return zlib.decompress(value).decode("utf-8") if isinstance(value, bytes) else value


def _row_to_passage(row: tuple, offset: int) -> Passage:
    pid, paper_id, chunk, title, text, year, venue, authors, url, cites, extra = row
    return Passage(
        passage_id=int(pid) + offset,
        paper_id=paper_id,
        title=title,
        text=_decode_text(text),
        chunk_index=int(chunk),
        year=year,
        venue=venue,
        authors=tuple(json.loads(authors)) if authors else (),
        url=url,
        citation_count=cites,
        extra=json.loads(extra) if extra else {},
    )


class PassageStore:
    """SQLite file of one part's passages keyed by local id; ``offset`` turns them into global ids."""

    FILE = FILE

    def __init__(self, path: Path, *, readonly: bool = True, offset: int = 0, compress: bool = True) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.offset = offset
        self.compress = compress
        self._local = threading.local()
        if not readonly:
            conn = self._conn()
            conn.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            else:
                conn = sqlite3.connect(self.path, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=OFF")
                conn.execute("PRAGMA synchronous=OFF")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- writing ----------------------------------------------------------------------------------
    def write(self, first: int, passages: Sequence[Passage]) -> None:
        """Insert ``passages`` under local ids ``first, first+1, ...`` (their passage_id is ignored)."""
        conn = self._conn()
        conn.executemany(
            "INSERT INTO passages VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    first + i, p.paper_id, p.chunk_index, p.title,
                    zlib.compress(p.text.encode("utf-8"), 6) if self.compress else p.text,
                    p.year, p.venue, json.dumps(list(p.authors)) if p.authors else None, p.url, p.citation_count,
                    json.dumps(p.extra) if p.extra else None, content_hash(p.embed_text),
                )
                for i, p in enumerate(passages)
            ],
        )
        conn.commit()

    def finish(self) -> None:
        """Create the indexes (once, after the bulk insert: faster than maintaining them row by row)."""
        conn = self._conn()
        conn.executescript(INDEXES)
        conn.commit()
        self.close()

    # -- reading ----------------------------------------------------------------------------------
    def get(self, local_ids: Sequence[int]) -> dict[int, Passage]:
        """Passages by local id, keyed by global id."""
        if not len(local_ids):
            return {}
        conn = self._conn()
        out: dict[int, Passage] = {}
        for i in range(0, len(local_ids), 500):
            chunk = [int(x) for x in local_ids[i : i + 500]]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT {_COLUMNS} FROM passages WHERE id IN ({marks})", chunk):
                p = _row_to_passage(row, self.offset)
                out[p.passage_id] = p
        return out

    def ids_of_papers(self, paper_ids: Sequence[str]) -> list[int]:
        """Global ids of the passages of ``paper_ids``."""
        conn = self._conn()
        out: list[int] = []
        for i in range(0, len(paper_ids), 500):
            chunk = list(paper_ids[i : i + 500])
            marks = ",".join("?" * len(chunk))
            out.extend(r[0] + self.offset for r in conn.execute(f"SELECT id FROM passages WHERE paper_id IN ({marks})", chunk))
        return sorted(out)

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM passages").fetchone()[0])

    def max_id(self) -> int:
        """Largest local id (-1 when empty): one B-tree lookup, unlike COUNT(*)."""
        value = self._conn().execute("SELECT MAX(id) FROM passages").fetchone()[0]
        return -1 if value is None else int(value)

    def iter_hashes(self, batch: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(local ids, content hashes) in id order, in arrays of at most ``batch``."""
        conn = self._conn()
        last = -1
        while True:
            rows = conn.execute("SELECT id, hash FROM passages WHERE id > ? ORDER BY id LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            arr = np.asarray(rows, dtype=np.int64)
            yield arr[:, 0], arr[:, 1]
            last = int(arr[-1, 0])

    def hashes_present(self, hashes: Sequence[int]) -> set[int]:
        """Which of ``hashes`` this part holds (index lookups)."""
        conn = self._conn()
        out: set[int] = set()
        for i in range(0, len(hashes), 500):
            chunk = [int(h) for h in hashes[i : i + 500]]
            marks = ",".join("?" * len(chunk))
            out.update(r[0] for r in conn.execute(f"SELECT hash FROM passages WHERE hash IN ({marks})", chunk))
        return out

    def iter_passages(self, start: int = 0, stop: int | None = None, batch: int = 2000) -> Iterator[Passage]:
        """Passages with local ids in [start, stop), in id order, streamed."""
        conn = self._conn()
        last = start - 1
        end = (1 << 62) if stop is None else stop
        while True:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM passages WHERE id > ? AND id < ? ORDER BY id LIMIT ?", (last, end, batch)
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _row_to_passage(row, self.offset)
            last = rows[-1][0]
