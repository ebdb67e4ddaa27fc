"""Import the reference's released datastore: each release shard becomes one part, then finalize.

Per shard: the vectors are memory-mapped (never loaded whole), the passages streamed from their
JSONL in bounded batches, each passage paired with its vector by id (positionally when the ids are
0..n-1, else a join on id; what has no partner is dropped and counted, never paired with a wrong
vector), optionally given its paper by the peS2o join, and written through `PartWriter` as
``part-{s:05d}``. A finished part is kept on a rerun (resume); an unfinished one is redone.
`finalize` then builds the one global index over all parts.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from datastore.config import DatastoreConfig
from datastore.errors import DatastoreError, SourceError
from datastore.finalize import finalize
from datastore.manifest import Manifest
from datastore.models import Passage
from datastore.paper_join import JoinStats, PaperJoin
from datastore.parts import PartWriter, finished_parts, part_name, remove_partials
from datastore.release import (
    Alignment,
    ReleaseShard,
    VectorsFormat,
    discover_release,
    iter_passages,
    open_vectors,
    reference_encoder,
)

SOURCE = "openscholar-release"
IMPORT_DIR = "import"


@dataclass
class ShardReport:
    """What importing one release shard did; stored in the part's meta and printed by the CLI."""

    shard: int
    part: str
    status: Literal["imported", "kept"] = "imported"
    passages_in_release: int = 0
    vectors_in_release: int = 0
    imported: int = 0
    passages_without_vector: int = 0
    vectors_without_passage: int = 0
    duplicate_passage_ids: int = 0
    duplicate_vector_ids: int = 0
    malformed_lines: int = 0
    first_malformed_lines: list[int] = field(default_factory=list)
    papers_matched: int = 0
    papers_unmatched: int = 0
    texts_in_several_papers: int = 0
    alignment: str = ""
    seconds: float = 0.0

    @property
    def mismatched(self) -> bool:
        return bool(self.passages_without_vector or self.vectors_without_passage or self.duplicate_passage_ids)


@dataclass
class ImportReport:
    root: Path
    shards: list[ShardReport]
    join: JoinStats | None = None
    manifest: Manifest | None = None
    missing_shards: list[int] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return sum(s.imported for s in self.shards)


def _read_rows(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``vectors[rows]`` for a memory-mapped file by positioned reads of contiguous runs.

    Reading (not touching the map) keeps the file's pages out of this process's RSS, and the pages
    read are dropped from the page cache afterwards: a 22 GB shard streams through in bounded memory.
    """
    if not isinstance(vectors, np.memmap) or not vectors.flags.c_contiguous or not len(rows):
        return np.asarray(vectors[rows])
    row_bytes = vectors.shape[1] * vectors.dtype.itemsize
    out = np.empty((len(rows), vectors.shape[1]), dtype=vectors.dtype)
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    breaks = np.flatnonzero(np.diff(srt) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(srt)]])
    flat = out.view(np.uint8).reshape(len(rows), row_bytes)
    assert vectors.filename is not None
    fd = os.open(vectors.filename, os.O_RDONLY)
    try:
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            first, count = int(srt[a]), b - a
            where = vectors.offset + first * row_bytes
            data = os.pread(fd, count * row_bytes, where)
            if len(data) != count * row_bytes:
                raise DatastoreError(f"{vectors.filename} is shorter than its header says", hint="download it again")
            block = np.frombuffer(data, dtype=np.uint8).reshape(count, row_bytes)
            if count == len(rows) and np.array_equal(order, np.arange(len(rows))):
                flat[:] = block
            else:
                flat[order[a:b]] = block
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, where, count * row_bytes, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return out


def _paper_id(shard: int, pid: int, origin: str | None) -> str:
    # An unmatched passage is its own paper (a shared "" would let max_per_paper hide all but 3 of them).
    return origin if origin else f"osv3-{shard}-{pid}"


def import_shard(
    root: Path, shard: ReleaseShard, *, trust_pickles: bool, join: PaperJoin | None, batch_size: int = 8192,
    scratch: Path | None = None, progress: bool = True,
) -> ShardReport:
    """Write release shard ``shard`` as part ``part-{s:05d}`` (the part's meta holds the report)."""
    t0 = time.perf_counter()
    name = part_name(shard.index)
    report = ShardReport(shard=shard.index, part=name)
    vec = open_vectors(shard, trust_pickles=trust_pickles, scratch=scratch)
    report.vectors_in_release = len(vec.ids)
    align = Alignment(vec.ids)
    report.alignment = align.mode
    report.duplicate_vector_ids = align.duplicate_vector_ids
    dim = int(vec.vectors.shape[1])
    bar = tqdm(
        total=shard.passages.stat().st_size, unit="B", unit_scale=True, desc=f"shard {shard.index}/{shard.num_shards}",
        disable=not progress,
    )
    meta: dict[str, Any] = {"source": SOURCE, "release_shard": shard.index, "num_shards": shard.num_shards}
    remove_partials(root, name)  # what a killed earlier run left of this part is redone from scratch
    writer = PartWriter(root, name, dim, meta=meta)
    try:
        for batch in iter_passages(shard, batch_size):
            report.passages_in_release += len(batch.ids)
            report.malformed_lines += len(batch.malformed)
            report.first_malformed_lines = (report.first_malformed_lines + batch.malformed)[:10]
            rows, repeats = align.rows(batch.ids)
            report.duplicate_passage_ids += repeats
            keep = np.flatnonzero(rows >= 0)
            report.passages_without_vector += int(len(rows) - len(keep) - repeats)
            bar.update(batch.bytes_read)
            if not len(keep):
                continue
            texts = [batch.texts[i] for i in keep.tolist()]
            papers, shared = join.lookup(texts) if join is not None else ([None] * len(texts), 0)
            report.texts_in_several_papers += shared
            passages = []
            for i, text, paper in zip(keep.tolist(), texts, papers, strict=True):
                pid = int(batch.ids[i])
                if paper is None:
                    passages.append(Passage(-1, _paper_id(shard.index, pid, batch.origin_ids[i]), "", text))
                else:
                    # the release embedded the text alone: embed_title "" keeps embed_text == what was embedded
                    passages.append(Passage(
                        -1, paper.paper_id, paper.title, text, chunk_index=paper.chunk, year=paper.year, url=paper.url,
                        extra={"embed_title": ""},
                    ))
            matched = sum(p is not None for p in papers)
            report.papers_matched += matched
            report.papers_unmatched += len(papers) - matched
            writer.write(passages, _read_rows(vec.vectors, rows[keep]))
            report.imported += len(passages)
        report.vectors_without_passage = align.unused()
        report.seconds = round(time.perf_counter() - t0, 1)
        writer.meta["import"] = asdict(report)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return report


@contextmanager
def _part_lock(root: Path, name: str) -> Iterator[bool]:
    """Whether this process may write part ``name`` (several importers may each take some shards)."""
    with (root / IMPORT_DIR / f"{name}.lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _kept(info_meta: dict[str, Any], s: int, name: str) -> ShardReport:
    data = dict(info_meta.get("import") or {})
    data.update(shard=s, part=name, status="kept")
    known = set(ShardReport.__dataclass_fields__)
    return ShardReport(**{k: v for k, v in data.items() if k in known})


def _all_imported(root: Path) -> int | None:
    """The release's shard count when ``root`` holds a finished part for every shard of it, else None."""
    info_path = root / IMPORT_DIR / "release.json"
    if not info_path.is_file():
        return None
    num_shards = int(json.loads(info_path.read_text(encoding="utf-8"))["num_shards"])
    present = {int(p.meta.get("release_shard", -1)) for p in finished_parts(root) if p.meta.get("source") == SOURCE}
    return num_shards if present >= set(range(num_shards)) else None


def import_release(
    src: str | Path, root: str | Path, *, fmt: VectorsFormat = "pickle", trust_pickles: bool = False,
    shards: Sequence[int] | None = None, papers: Sequence[str | Path] = (), finish: bool = False,
    config: DatastoreConfig | None = None, batch_size: int = 8192, progress: bool = True,
) -> ImportReport:
    """Import the release at ``src`` into the datastore ``root`` (resumable); ``finish`` builds the index.

    Parts already finished are kept. ``papers`` (peS2o JSONL) give passages their paper fields;
    without them every passage is its own paper and stays searchable.
    """
    root = Path(root).expanduser()
    try:
        release = discover_release(src, fmt, shards)
        num_shards = release[0].num_shards
    except SourceError:
        # a release imported shard by shard (each deleted once imported, to fit a smaller disk) can
        # still be finished: every shard it had is a finished part here
        imported = _all_imported(root) if finish and shards is None else None
        if imported is None:
            raise
        release, num_shards = [], imported
    root.mkdir(parents=True, exist_ok=True)
    (root / IMPORT_DIR).mkdir(exist_ok=True)
    done = {p.name: p for p in finished_parts(root)}
    for p in done.values():
        if p.meta.get("source") != SOURCE:
            raise DatastoreError(
                f"{root} already holds part {p.name} that is not from the release",
                hint="import into an empty directory (a release import owns the part names part-00000..)",
            )
    encoder = reference_encoder()
    release_info = {"source": str(Path(src).expanduser().resolve()), "num_shards": num_shards, "vectors_format": fmt}
    info_path = root / IMPORT_DIR / "release.json"
    text = json.dumps(release_info, indent=2) + "\n"
    if not info_path.is_file() or info_path.read_text(encoding="utf-8") != text:
        tmp = info_path.with_name(f"release.json.{os.getpid()}.tmp")  # importers may run side by side
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, info_path)
    join: PaperJoin | None = None
    join_stats: JoinStats | None = None
    if papers:
        join, join_stats = PaperJoin.build(papers, root / IMPORT_DIR / "paper_join.sqlite", progress=progress)
    reports: list[ShardReport] = []
    busy: list[int] = []
    try:
        for shard in release:
            name = part_name(shard.index)
            if name in done:
                reports.append(_kept(done[name].meta, shard.index, name))
                continue
            with _part_lock(root, name) as mine:
                if not mine:  # another importer is writing this shard right now
                    busy.append(shard.index)
                    continue
                finished = {p.name: p for p in finished_parts(root)}
                if name in finished:  # it finished it while we were busy with other shards
                    reports.append(_kept(finished[name].meta, shard.index, name))
                    continue
                reports.append(import_shard(
                    root, shard, trust_pickles=trust_pickles, join=join, batch_size=batch_size,
                    scratch=root / IMPORT_DIR, progress=progress,
                ))
    finally:
        if join is not None:
            join.close()
    present = {int(p.meta.get("release_shard", -1)) for p in finished_parts(root)}
    report = ImportReport(root, reports, join_stats, missing_shards=sorted(set(range(num_shards)) - present))
    if finish:
        if busy:
            raise DatastoreError(
                f"release shards {busy} are being imported by another process: not finalizing without them",
                hint="rerun with --finish once that import is done (finished parts are kept)",
            )
        report.manifest = finalize(root, encoder, config or DatastoreConfig(), progress=progress)
    return report
