"""Corpus sources: each yields ``Paper`` records and counts what it had to skip.

Formats: peS2o-style JSONL (one paper per line), a BEIR directory (``corpus.jsonl``, BEIR ids kept),
ScholarQABench files (contexts under ``gold_ctx`` / ``ctxs``, JSON or JSONL). A source spec on the
command line is a path, optionally typed: ``beir:DIR``, ``jsonl:FILE``, ``scholarqabench:PATH``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from datastore.errors import SourceError
from datastore.models import Paper

MAX_REPORTED_LINES = 5


@dataclass
class SourceStats:
    """What a source read: records yielded, malformed records skipped and where."""

    name: str
    papers: int = 0
    malformed: int = 0
    malformed_lines: list[int] = field(default_factory=list)

    def skip(self, line: int, strict: bool, reason: str) -> None:
        if strict:
            raise SourceError(
                f"{self.name}: malformed record at line {line} ({reason})",
                hint="fix or remove the line, or build without --strict to skip malformed records",
            )
        self.malformed += 1
        if len(self.malformed_lines) < MAX_REPORTED_LINES:
            self.malformed_lines.append(line)

    def summary(self) -> str:
        s = f"{self.name}: {self.papers} papers"
        if self.malformed:
            s += f", {self.malformed} malformed records skipped (first at lines {self.malformed_lines})"
        return s


class Source(Protocol):
    stats: SourceStats

    def __iter__(self) -> Iterator[Paper]: ...


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _authors(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(a.strip() for a in value.split(",") if a.strip())
    out = []
    for a in value:
        if isinstance(a, dict):
            name = a.get("name") or " ".join(str(a.get(k, "")) for k in ("first", "last")).strip()
            if name:
                out.append(str(name))
        elif a:
            out.append(str(a))
    return tuple(out)


@dataclass(frozen=True)
class ByteRange:
    """The lines of a file that start in bytes [start, stop); ``first_line`` numbers the first one."""

    start: int = 0
    stop: int | None = None
    first_line: int = 1


def _iter_json_lines(
    path: Path, stats: SourceStats, strict: bool, span: ByteRange | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    span = span or ByteRange()
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}", hint="check the path") from exc
    with handle:
        handle.seek(span.start)
        pos = span.start
        for lineno, raw in enumerate(handle, start=span.first_line):
            if span.stop is not None and pos >= span.stop:
                return
            pos += len(raw)
            line = raw.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                stats.skip(lineno, strict, "not valid JSON")
                continue
            if not isinstance(record, dict):
                stats.skip(lineno, strict, "not a JSON object")
                continue
            yield lineno, record


class JsonlSource:
    """peS2o-style JSONL: id, title, text or abstract, year, venue, authors, url, citation count."""

    def __init__(self, path: Path, *, strict: bool = False, span: ByteRange | None = None) -> None:
        self.path = Path(path)
        self.strict = strict
        self.span = span
        self.stats = SourceStats(str(self.path))

    def __iter__(self) -> Iterator[Paper]:
        for lineno, r in _iter_json_lines(self.path, self.stats, self.strict, self.span):
            pid = r.get("id", r.get("paper_id", r.get("corpusid", r.get("_id"))))
            text = r.get("text") or r.get("abstract") or ""
            title = r.get("title") or ""
            if pid is None or not isinstance(text, str) or not isinstance(title, str) or not (text or title).strip():
                self.stats.skip(lineno, self.strict, "needs an id and a title or text")
                continue
            meta: dict[str, Any] = r["metadata"] if isinstance(r.get("metadata"), dict) else {}
            self.stats.papers += 1
            yield Paper(
                paper_id=str(pid),
                title=title.strip(),
                text=text.strip() or title.strip(),
                year=_int_or_none(r.get("year", meta.get("year"))),
                venue=r.get("venue") or meta.get("venue") or None,
                authors=_authors(r.get("authors", meta.get("authors"))),
                url=r.get("url") or meta.get("url") or None,
                citation_count=_int_or_none(
                    r.get("citation_count", r.get("citationCount", r.get("n_citations")))
                ),
                source="jsonl",
            )


class BeirSource:
    """A BEIR directory: ``corpus.jsonl`` with ``_id``, ``title``, ``text``; doc ids are kept."""

    def __init__(self, directory: Path, *, strict: bool = False, span: ByteRange | None = None) -> None:
        self.directory = Path(directory)
        corpus = beir_corpus(self.directory)
        self.inner = JsonlSource(corpus, strict=strict, span=span)
        self.stats = self.inner.stats

    def __iter__(self) -> Iterator[Paper]:
        for paper in self.inner:
            yield Paper(**{**_paper_fields(paper), "source": "beir"})


def beir_corpus(directory: Path) -> Path:
    corpus = Path(directory) / "corpus.jsonl"
    if not corpus.is_file():
        raise SourceError(
            f"{directory} is not a BEIR directory (no corpus.jsonl)",
            hint="point to the dataset folder that holds corpus.jsonl, queries.jsonl and qrels/",
        )
    return corpus


def _paper_fields(paper: Paper) -> dict[str, Any]:
    return {f: getattr(paper, f) for f in Paper.__slots__}  # type: ignore[attr-defined]


def context_paper_id(title: str, text: str) -> str:
    """A stable id for a ScholarQABench context that carries none: a hash of its title and text."""
    return "ctx:" + hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()[:16]


def context_text(raw: Any) -> str:
    """A context's text: a string, or a PubMedQA record whose ``contexts`` list holds the sections."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        parts = raw.get("contexts") or []
        if isinstance(parts, list):
            return " ".join(str(p) for p in parts)
    return ""


class ScholarQABenchSource:
    """Contexts (``gold_ctx`` and ``ctxs``) of ScholarQABench files, JSON list or JSONL."""

    def __init__(self, path: Path, *, strict: bool = False) -> None:
        self.path = Path(path)
        self.strict = strict
        self.stats = SourceStats(str(self.path))

    def _records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if self.path.suffix == ".json":
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise SourceError(f"cannot read {self.path}: {exc}", hint="check that it is a JSON list") from exc
            if not isinstance(data, list):
                raise SourceError(f"{self.path} is not a JSON list of examples", hint="pass a ScholarQABench file")
            for i, r in enumerate(data, start=1):
                if isinstance(r, dict):
                    yield i, r
                else:
                    self.stats.skip(i, self.strict, "not a JSON object")
        else:
            yield from _iter_json_lines(self.path, self.stats, self.strict)

    def __iter__(self) -> Iterator[Paper]:
        for lineno, r in self._records():
            contexts = [c for key in ("gold_ctx", "ctxs") for c in (r.get(key) or [])]
            for ctx in contexts:
                if not isinstance(ctx, dict):
                    self.stats.skip(lineno, self.strict, "a context is not an object")
                    continue
                title = str(ctx.get("title") or "").strip()
                text = context_text(ctx.get("text")).strip()
                if not text:
                    self.stats.skip(lineno, self.strict, "a context has no text")
                    continue
                pid = ctx.get("id") or ctx.get("paper_id") or ctx.get("corpusid")
                self.stats.papers += 1
                yield Paper(
                    paper_id=str(pid) if pid else context_paper_id(title, text),
                    title=title,
                    text=text,
                    year=_int_or_none(ctx.get("year")),
                    venue=ctx.get("venue") or None,
                    authors=_authors(ctx.get("authors")),
                    url=ctx.get("url") or None,
                    citation_count=_int_or_none(ctx.get("citation_count")),
                    source="scholarqabench",
                )


def open_source(spec: str, *, strict: bool = False, span: ByteRange | None = None) -> Source:
    """A source from a command-line spec: ``beir:DIR``, ``jsonl:FILE``, ``scholarqabench:PATH`` or a path.

    An untyped directory with corpus.jsonl is BEIR; a file whose records carry contexts is
    ScholarQABench; any other file is peS2o-style JSONL. ``span`` reads only a byte range of a
    line-oriented source (BEIR, JSONL): one part of a build.
    """
    kind, path = resolve_spec(spec)
    if kind == "beir":
        return BeirSource(path, strict=strict, span=span)
    if kind == "scholarqabench":
        if path.is_dir():
            raise SourceError(f"{path} is a directory", hint="pass ScholarQABench files one by one")
        return ScholarQABenchSource(path, strict=strict)
    return JsonlSource(path, strict=strict, span=span)


def line_file(spec: str) -> Path | None:
    """The JSONL file of a source that can be split into byte ranges (BEIR, JSONL), else None."""
    kind, path = resolve_spec(spec)
    if kind == "beir":
        return beir_corpus(path)
    return path if kind == "jsonl" else None


def resolve_spec(spec: str) -> tuple[str, Path]:
    """(kind, path) of a source spec; kind is beir, jsonl or scholarqabench."""
    kind, _, rest = spec.partition(":")
    if rest and kind in ("beir", "jsonl", "scholarqabench", "pes2o"):
        path = Path(rest).expanduser()
    else:
        kind, path = "", Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"source {path} does not exist", hint="pass an existing file or directory")
    if not kind:
        if path.is_dir():
            kind = "beir"
        else:
            kind = "scholarqabench" if _looks_like_scholarqabench(path) else "jsonl"
    return ("jsonl" if kind == "pes2o" else kind), path


def _looks_like_scholarqabench(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            head = fh.read(200_000)
    except OSError:
        return False
    return '"gold_ctx"' in head or '"ctxs"' in head


def scholarqabench_context_files(root: Path) -> list[Path]:
    """The files under a ScholarQABench data directory that carry contexts, in a stable order."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix in (".json", ".jsonl") and _looks_like_scholarqabench(p))
