"""Give the release's passages their papers: peS2o re-chunked the reference's way, joined by content.

The release's passages carry no paper id or title. The reference cut each peS2o record's ``text``
into 256-word chunks (``' '.join(words[i:i+256])`` over ``text.split()``, last chunk kept,
retriever/src/data.py ``split_data_into_chunks``), so re-chunking peS2o the same way reproduces
each passage's text exactly. The join key is a 64-bit hash of the whitespace-normalized text,
kept with the paper's fields in an on-disk SQLite table (bounded memory at any corpus size; the
hash index is built once, after loading, by SQLite's external sort).

A 64-bit key over 237M passages collides with probability ~1e-3 for the whole corpus (birthday
bound); a collision would attach one passage to a wrong paper, never drop it.
"""

from __future__ import annotations

import fcntl
import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from datastore.errors import SourceError
from datastore.jsonl import JSONDecodeError, dumps, loads

REFERENCE_CHUNK_WORDS = 256
_SCHEMA = """
CREATE TABLE IF NOT EXISTS papers (id INTEGER PRIMARY KEY, paper_id TEXT NOT NULL, title TEXT NOT NULL,
                                   year INTEGER, url TEXT);
CREATE TABLE IF NOT EXISTS chunks (hash INTEGER NOT NULL, paper INTEGER NOT NULL, chunk INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def content_hash(text: str, *, normalized: bool = False) -> int:
    """Signed 64-bit key of ``text`` with whitespace normalized (what the join matches on).

    ``normalized``: the text is already ``' '.join(words)`` (our own re-chunking), skip the re-join.
    """
    if not normalized:
        text = " ".join(text.split())
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def reference_chunks(text: str, words: int = REFERENCE_CHUNK_WORDS) -> list[str]:
    """The reference's chunking: whitespace words, ``words`` per chunk, the last chunk kept."""
    toks = text.split()
    return [" ".join(toks[i : i + words]) for i in range(0, len(toks), words)]


@dataclass(frozen=True)
class PaperFields:
    """What the join gives a passage."""

    paper_id: str
    title: str
    chunk: int
    year: int | None
    url: str | None


@dataclass
class JoinStats:
    papers: int = 0
    chunks: int = 0
    malformed: int = 0
    sources: list[str] = field(default_factory=list)


def _paper_fields(rec: dict[str, Any]) -> tuple[str, str, str, int | None, str | None] | None:
    """(paper id, title, text, year, url) of a peS2o-like record, or None when it has no id or text."""
    pid = rec.get("id", rec.get("paper_id", rec.get("_id")))
    text = rec.get("text") or rec.get("abstract") or ""
    if pid is None or not isinstance(text, str) or not text.strip():
        return None
    title = rec.get("title")
    if not isinstance(title, str):
        # peS2o puts the title on the text's first line ("title\n\nabstract..."); use it when it looks like one
        first, sep, _ = text.strip().partition("\n")
        title = first.strip() if sep and len(first) <= 300 else ""
    year = rec.get("year")
    if not isinstance(year, int):
        created = rec.get("created") or (rec.get("metadata") or {}).get("year")
        year = int(str(created)[:4]) if created is not None and str(created)[:4].isdigit() else None
    url = rec.get("url")
    return str(pid), title, text.strip(), year, url if isinstance(url, str) else None


class PaperJoin:
    """The on-disk join table: content hash -> (paper, chunk index)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA cache_size=-65536")  # 64 MB, whatever the corpus size
        self.conn.execute("PRAGMA temp_store=FILE")
        self.conn.executescript(_SCHEMA)

    @classmethod
    def build(
        cls, sources: Sequence[str | Path], path: Path, *, words: int = REFERENCE_CHUNK_WORDS, progress: bool = True
    ) -> tuple[PaperJoin, JoinStats]:
        """Load ``sources`` (peS2o-like JSONL) into ``path``; reused as is when built from the same files."""
        paths = [Path(s).expanduser() for s in sources]
        for p in paths:
            if not p.is_file():
                raise SourceError(f"no papers file at {p}", hint="pass peS2o JSONL files to --papers")
        signature = dumps([[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in paths] + [words]).decode()
        path.parent.mkdir(parents=True, exist_ok=True)
        # importers of several shards may run at once: one builds the table, the others wait and reuse it
        with path.with_name(path.name + ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return cls._build_locked(paths, path, signature, words, progress)

    @classmethod
    def _build_locked(
        cls, paths: list[Path], path: Path, signature: str, words: int, progress: bool
    ) -> tuple[PaperJoin, JoinStats]:
        join = cls(path)
        done = dict(join.conn.execute("SELECT key, value FROM meta").fetchall())
        if done.get("signature") == signature and done.get("complete") == "1":
            stats = JoinStats(**loads(done["stats"]))
            return join, stats
        join.conn.close()
        path.unlink(missing_ok=True)  # an unfinished or different load: redo it (a load is one pass)
        join = cls(path)
        stats = JoinStats(sources=[str(p) for p in paths])
        conn = join.conn
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        total = sum(p.stat().st_size for p in paths)
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="papers (join table)", disable=not progress)
        rows: list[tuple[int, int, int]] = []
        for p in paths:
            with p.open("rb") as fh:
                for line in fh:
                    bar.update(len(line))
                    if not line.strip():
                        continue
                    try:
                        fields = _paper_fields(loads(line))
                    except (JSONDecodeError, AttributeError):
                        fields = None
                    if fields is None:
                        stats.malformed += 1
                        continue
                    pid, title, text, year, url = fields
                    cur = conn.execute("INSERT INTO papers (paper_id, title, year, url) VALUES (?,?,?,?)", (pid, title, year, url))
                    paper = int(cur.lastrowid or 0)
                    stats.papers += 1
                    for i, chunk in enumerate(reference_chunks(text, words)):
                        rows.append((content_hash(chunk, normalized=True), paper, i))
                    if len(rows) >= 50_000:
                        conn.executemany("INSERT INTO chunks VALUES (?,?,?)", rows)
                        stats.chunks += len(rows)
                        rows = []
        if rows:
            conn.executemany("INSERT INTO chunks VALUES (?,?,?)", rows)
            stats.chunks += len(rows)
        bar.close()
        conn.execute("CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(hash)")
        conn.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?,?)",
            [("signature", signature), ("stats", dumps(stats.__dict__).decode()), ("complete", "1")],
        )
        conn.commit()
        return join, stats

    def lookup(self, texts: Sequence[str]) -> tuple[list[PaperFields | None], int]:
        """Paper fields per text (None: no paper has it) and how many texts several papers share.

        A text found in several papers (a duplicated abstract, boilerplate) goes to the first loaded.
        """
        hashes = [content_hash(t) for t in texts]
        found: dict[int, PaperFields] = {}
        shared: set[int] = set()
        uniq = list(dict.fromkeys(hashes))
        for i in range(0, len(uniq), 500):
            chunk = uniq[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for h, c, pid, title, year, url in self.conn.execute(
                f"SELECT c.hash, c.chunk, p.paper_id, p.title, p.year, p.url FROM chunks c JOIN papers p ON p.id = c.paper "
                f"WHERE c.hash IN ({marks}) ORDER BY c.rowid",
                chunk,
            ):
                if h in found:
                    if found[h].paper_id != pid:
                        shared.add(h)
                    continue
                found[h] = PaperFields(pid, title, int(c), year, url)
        return [found.get(h) for h in hashes], sum(1 for h in hashes if h in shared)

    def close(self) -> None:
        self.conn.close()


def iter_reference_passages(sources: Sequence[str | Path], words: int = REFERENCE_CHUNK_WORDS) -> Iterator[tuple[str, int, str]]:
    """(paper id, chunk index, chunk text) of peS2o-like files, chunked the reference's way."""
    for src in sources:
        with Path(src).open("rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                fields = _paper_fields(loads(line))
                if fields is None:
                    continue
                for i, chunk in enumerate(reference_chunks(fields[2], words)):
                    yield fields[0], i, chunk
