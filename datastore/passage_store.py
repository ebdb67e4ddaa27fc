"""Passage text and paper metadata on disk (SQLite), random access by integer passage id.

One file per shard. Queries read only the rows they return; nothing loads the corpus into RAM.
Connections are opened per thread (SQLite objects must not cross threads) and read-only when serving.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from datastore.models import Passage

SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY,
    paper_id TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    year INTEGER,
    venue TEXT,
    authors TEXT,
    url TEXT,
    citation_count INTEGER,
    extra TEXT,
    hash INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_paper ON passages(paper_id);
"""

_COLUMNS = "id, paper_id, chunk, title, text, year, venue, authors, url, citation_count, extra"


def _row_to_passage(row: tuple) -> Passage:
    pid, paper_id, chunk, title, text, year, venue, authors, url, cites, extra = row
    return Passage(
        passage_id=int(pid),
        paper_id=paper_id,
        title=title,
        text=text,
        chunk_index=int(chunk),
        year=year,
        venue=venue,
        authors=tuple(json.loads(authors)) if authors else (),
        url=url,
        citation_count=cites,
        extra=json.loads(extra) if extra else {},
    )


class PassageStore:
    """SQLite file of passages keyed by global passage id."""

    FILE = "passages.sqlite"

    def __init__(self, path: Path, *, readonly: bool = True) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._local = threading.local()
        if not readonly:
            with self._conn() as conn:
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

    def write(self, passages: Iterable[tuple[Passage, int]]) -> None:
        """Insert (passage, content hash) rows; ids must be assigned."""
        conn = self._conn()
        conn.executemany(
            "INSERT INTO passages VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    p.passage_id, p.paper_id, p.chunk_index, p.title, p.text, p.year, p.venue,
                    json.dumps(list(p.authors)) if p.authors else None, p.url, p.citation_count,
                    json.dumps(p.extra) if p.extra else None, h,
                )
                for p, h in passages
            ],
        )
        conn.commit()

    def get(self, ids: Sequence[int]) -> dict[int, Passage]:
        if not ids:
            return {}
        conn = self._conn()
        out: dict[int, Passage] = {}
        for i in range(0, len(ids), 500):
            chunk = [int(x) for x in ids[i : i + 500]]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT {_COLUMNS} FROM passages WHERE id IN ({marks})", chunk):
                p = _row_to_passage(row)
                out[p.passage_id] = p
        return out

    def ids_of_papers(self, paper_ids: Sequence[str]) -> list[int]:
        conn = self._conn()
        out: list[int] = []
        for i in range(0, len(paper_ids), 500):
            chunk = list(paper_ids[i : i + 500])
            marks = ",".join("?" * len(chunk))
            out.extend(r[0] for r in conn.execute(f"SELECT id FROM passages WHERE paper_id IN ({marks})", chunk))
        return out

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM passages").fetchone()[0])

    def id_range(self) -> tuple[int, int] | None:
        lo, hi = self._conn().execute("SELECT MIN(id), MAX(id) FROM passages").fetchone()
        return None if lo is None else (int(lo), int(hi))

    def hashes(self) -> Iterator[int]:
        for (h,) in self._conn().execute("SELECT hash FROM passages"):
            yield int(h)

    def iter_passages(self, batch: int = 2000) -> Iterator[Passage]:
        conn = self._conn()
        last = -1
        while True:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM passages WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _row_to_passage(row)
            last = rows[-1][0]
