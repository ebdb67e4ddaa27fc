"""Building, extending and pruning datastores: plan -> build each part -> finalize.

`plan_parts` splits the sources into parts deterministically (byte ranges of ~``part_papers``
lines of each JSONL/BEIR file; other sources whole), `build_part` chunks, embeds and writes one
part (idempotent: a finished part is returned as is), and `finalize` assigns ids, deduplicates and
builds the one index. The local build runs these in one process; the Celery build ships the same
`PartPlan`s to workers. A kill at any point leaves finished parts, which the next run keeps, and
unfinished ``*.partial-*`` directories, which it deletes and redoes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from datastore.chunking import Chunker
from datastore.config import DatastoreConfig
from datastore.errors import DatastoreError, EncoderMismatch
from datastore.finalize import add_parts_locked, finalize_locked
from datastore.locking import locked
from datastore.manifest import (
    MANIFEST,
    EncoderInfo,
    Manifest,
    PartInfo,
    SourceInfo,
    build_id,
    now,
    read_manifest,
)
from datastore.models import Passage
from datastore.parts import (
    PART_JSON,
    PartWriter,
    part_name,
    parts_dir,
    read_part_info,
    remove_partials,
)
from datastore.passage_store import content_hash
from datastore.sources import ByteRange, line_file, open_source

log = logging.getLogger(__name__)

__all__ = [
    "BuildReport", "DatastoreBuilder", "PartPlan", "PassageEncoder", "build_part", "content_hash",
    "delete_papers", "encoder_info", "plan_parts", "tombstone_papers",
]


class PassageEncoder(Protocol):
    """What a build needs of the embedder (retriever's ``Embedder`` satisfies it)."""

    model_id: str

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


class PartPlan(BaseModel):
    """One part of a build: the lines of one source that start in bytes [byte_start, byte_stop).

    JSON-serializable so that it can travel to a worker; the same sources and ``part_papers``
    always give the same plans.
    """

    name: str = Field(description="Part name (part_name(i)); parts sort by name and ids follow.")
    source: str = Field(description="The source spec as given to the build.")
    source_index: int = Field(0, description="Position of the source in the build's list.")
    byte_start: int = Field(0, ge=0, description="First byte of the range (a line start).")
    byte_stop: int | None = Field(None, description="End of the range (None: to the end of the source).")
    first_line: int = Field(1, ge=1, description="Line number of the first line of the range (for error reports).")
    lines: int = Field(0, ge=0, description="Lines in the range (about the papers it holds; 0 if unknown).")


@dataclass
class BuildReport:
    root: Path
    papers: int = 0
    passages_added: int = 0
    duplicates: int = 0
    parts_written: int = 0
    parts_reused: int = 0
    sources: list[SourceInfo] = field(default_factory=list)
    manifest: Manifest | None = None
    added: tuple[int, int] | None = None


def encoder_info(encoder: PassageEncoder) -> EncoderInfo:
    """The manifest's record of ``encoder`` (what a query encoder must match)."""
    cfg = getattr(encoder, "config", None)
    return EncoderInfo(
        id=encoder.model_id,
        dim=encoder.dim,
        normalized=bool(getattr(cfg, "normalize", True)),
        pooling=getattr(encoder, "pooling", None) or "mean",  # the effective pooling (model-default resolved)
        max_tokens=encoder.max_tokens,
        passage_prefix=str(getattr(cfg, "passage_prefix", "") or ""),
    )


# -- planning ---------------------------------------------------------------------------------------

def _line_cuts(path: Path, every: int) -> list[tuple[int, int, int, int]]:
    """(byte_start, byte_stop, first_line, lines) ranges of ``every`` lines each, by one streamed scan."""
    cuts: list[tuple[int, int, int, int]] = []
    start, first, lines, offset, last = 0, 1, 0, 0, b"\n"
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(16 << 20), b""):
            ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
            i = 0
            while i < len(ends):
                take = min(every - lines, len(ends) - i)
                lines += take
                i += take
                if lines == every:
                    stop = offset + int(ends[i - 1]) + 1
                    cuts.append((start, stop, first, lines))
                    start, first, lines = stop, first + lines, 0
            offset += len(block)
            last = block[-1:]
    if offset > start or not cuts:  # the tail; a last line without a newline counts too
        cuts.append((start, offset, first, lines + (last != b"\n")))
    return cuts


def plan_parts(sources: Sequence[str], config: DatastoreConfig, *, first: int = 0) -> list[PartPlan]:
    """Split ``sources`` into parts of about ``config.part_papers`` records, named from part ``first``."""
    plans: list[PartPlan] = []
    for si, spec in enumerate(sources):
        path = line_file(spec)
        if path is None:
            plans.append(PartPlan(name=part_name(first + len(plans)), source=spec, source_index=si))
            continue
        for start, stop, line, n in _line_cuts(path, config.part_papers):
            plans.append(
                PartPlan(name=part_name(first + len(plans)), source=spec, source_index=si, byte_start=start,
                         byte_stop=stop, first_line=line, lines=n)
            )
    return plans


# -- one part -------------------------------------------------------------------------------------

def build_part(
    root: Path, plan: PartPlan, encoder: PassageEncoder, config: DatastoreConfig, *, progress: bool = False
) -> PartInfo:
    """Chunk, embed and write the part ``plan`` under ``root/parts``; a finished part is returned as is."""
    root = Path(root)
    final = parts_dir(root) / plan.name
    want = plan.model_dump(mode="json")
    if (final / PART_JSON).is_file():
        info = read_part_info(final)
        if info.meta.get("plan") != want:
            raise DatastoreError(
                f"{final} holds another part ({info.meta.get('plan')}) than the one planned ({want})",
                hint=f"rerun the build or add that wrote it, or delete {final} to build this one",
            )
        return info
    chunker = Chunker(config.chunking, encoder.count_tokens, encoder.max_tokens)
    span = ByteRange(plan.byte_start, plan.byte_stop, plan.first_line) if line_file(plan.source) is not None else None
    source = open_source(plan.source, strict=config.strict, span=span)
    meta = {"plan": want, "source": plan.source, "encoder": encoder.model_id}
    step = config.batch_size
    buffer: list[Passage] = []
    with PartWriter(root, plan.name, encoder.dim, meta=meta, compress=config.compress_text) as writer:
        with tqdm(desc=plan.name, unit="paper", total=plan.lines or None, disable=not progress) as bar:
            for paper in source:
                buffer.extend(chunker.passages(paper))
                bar.update(1)
                while len(buffer) >= step * 8:
                    _embed_write(writer, encoder, buffer[: step * 8], step)
                    buffer = buffer[step * 8 :]
            _embed_write(writer, encoder, buffer, step)
        s = source.stats
        writer.meta["stats"] = {"papers": s.papers, "malformed": s.malformed, "malformed_lines": s.malformed_lines}
        return writer.close()


def _embed_write(writer: PartWriter, encoder: PassageEncoder, passages: list[Passage], step: int) -> None:
    for i in range(0, len(passages), step):
        batch = passages[i : i + step]
        writer.write(batch, encoder.embed([p.embed_text for p in batch]))


# -- the local build --------------------------------------------------------------------------------

class DatastoreBuilder:
    """The one-process build: plan -> build_part for each -> finalize (and `add` for new sources)."""

    def __init__(self, encoder: PassageEncoder, config: DatastoreConfig | None = None, *, progress: bool = True) -> None:
        self.encoder = encoder
        self.config = config or DatastoreConfig()
        self.progress = progress

    def build(self, sources: Sequence[str], out: str | Path) -> BuildReport:
        """Build ``out`` from ``sources``, or resume the interrupted build there."""
        root = Path(out).expanduser()
        with locked(root):
            enc = encoder_info(self.encoder)
            self._start_or_resume(root, list(sources), enc)
            remove_partials(root)
            plans = plan_parts(list(sources), self.config)
            report = BuildReport(root=root)
            infos = self._build_parts(root, plans, report)
            manifest = finalize_locked(root, enc, self.config, progress=self.progress)
            return self._finish(report, manifest, infos, (0, manifest.next_id))

    def add(self, root: str | Path, sources: Sequence[str]) -> BuildReport:
        """Add papers from ``sources`` as new parts; existing parts and ids are not touched."""
        root = Path(root).expanduser()
        with locked(root):
            manifest = read_manifest(root, require_complete=True)
            enc = manifest.encoder
            if enc.id != self.encoder.model_id or enc.dim != self.encoder.dim:
                raise EncoderMismatch(
                    f"datastore at {root} was built with encoder {enc.id} (dim {enc.dim}) but this build uses "
                    f"{self.encoder.model_id} (dim {self.encoder.dim})",
                    hint="use the datastore's encoder (--encoder) or build a new datastore with --out",
                )
            plans = plan_parts(list(sources), self.config, first=len(manifest.parts))
            report = BuildReport(root=root)
            before = manifest.next_id
            infos = self._build_parts(root, plans, report)
            manifest = add_parts_locked(root, infos, self.config, progress=self.progress)
            return self._finish(report, manifest, infos, (before, manifest.next_id))

    def _build_parts(self, root: Path, plans: list[PartPlan], report: BuildReport) -> list[PartInfo]:
        infos = []
        for plan in plans:
            reused = (parts_dir(root) / plan.name / PART_JSON).is_file()
            infos.append(build_part(root, plan, self.encoder, self.config, progress=self.progress))
            report.parts_reused += reused
            report.parts_written += not reused
        return infos

    def _finish(self, report: BuildReport, manifest: Manifest, infos: list[PartInfo], added: tuple[int, int]) -> BuildReport:
        names = {p.name for p in infos}
        parts = [p for p in manifest.parts if p.name in names]
        report.manifest = manifest
        report.passages_added = sum(p.count for p in parts)
        report.duplicates = manifest.duplicates
        report.added = added
        by_spec: dict[str, SourceInfo] = {}
        for p in parts:
            st = p.meta.get("stats") or {}
            info = by_spec.setdefault(p.meta.get("source", ""), SourceInfo(spec=p.meta.get("source", "")))
            info.papers += int(st.get("papers", 0))
            info.malformed += int(st.get("malformed", 0))
            info.malformed_lines = sorted(info.malformed_lines + list(st.get("malformed_lines", [])))[:5]
        report.sources = list(by_spec.values())
        report.papers = sum(s.papers for s in report.sources)
        return report

    def _start_or_resume(self, root: Path, sources: list[str], enc: EncoderInfo) -> None:
        chunking = self.config.chunking.model_dump()
        bid = build_id(enc.id, enc.dim, chunking, enc.passage_prefix)
        if (root / MANIFEST).is_file():
            manifest = read_manifest(root)
            if manifest.complete:
                raise DatastoreError(
                    f"{root} already holds a complete datastore",
                    hint="add papers with `openscholar datastore add`, or build into a new --out directory",
                )
            if manifest.build_id != bid or manifest.sources != sources:
                raise DatastoreError(
                    f"{root} holds an interrupted build with other settings or sources ({manifest.sources})",
                    hint="rerun that exact build to resume it, or delete the directory to start over",
                )
            log.info("resuming the build of %s", root)
            return
        if any(p.name != ".lock" for p in root.iterdir()):
            raise DatastoreError(f"{root} is not empty and is not a datastore", hint="choose an empty --out directory")
        stamp_ = now()
        Manifest(encoder=enc, chunking=chunking, build_id=bid, created_at=stamp_, updated_at=stamp_,
                 sources=sources).save(root)


# -- deletes ----------------------------------------------------------------------------------------

def tombstone_papers(root: str | Path, paper_ids: Sequence[str]) -> tuple[dict[str, int], list[int]]:
    """Tombstone every passage of ``paper_ids``; returns passages per paper and the ids newly deleted.

    Costs the lookups and the bytes set (plus re-stamping the tombstone file); unknown ids raise.
    """
    from datastore import journal
    from datastore.integrity import check_file
    from datastore.manifest import TOMBSTONES, stamp
    from datastore.passage_store import FILE as PASSAGES
    from datastore.passage_store import PassageStore
    from datastore.tombstones import open_tombstones, sync

    root = Path(root).expanduser()
    with locked(root):
        manifest = journal.recover(root, read_manifest(root, require_complete=True))
        check_file(root, TOMBSTONES, manifest.files[TOMBSTONES])
        counts: dict[str, int] = {}
        ids: list[int] = []
        for p in manifest.parts:
            store = PassageStore(parts_dir(root) / p.name / PASSAGES, readonly=True, offset=p.start)
            try:
                for pid in paper_ids:
                    found = store.ids_of_papers([pid])
                    if found:
                        counts[pid] = counts.get(pid, 0) + len(found)
                        ids.extend(found)
            finally:
                store.close()
        missing = [pid for pid in paper_ids if pid not in counts]
        if missing:
            raise DatastoreError(
                f"no passages for paper ids {missing} in {root}", hint="check the ids with `openscholar search --json`"
            )
        tomb = open_tombstones(root, manifest.passages, writable=True)
        arr = np.asarray(sorted(set(ids)), dtype=np.int64)
        new = arr[tomb[arr] == 0]
        journal.begin(root, manifest, "delete", ids=new.tolist())
        tomb[new] = 1
        sync(tomb)
        del tomb
        manifest.files[TOMBSTONES] = stamp(root / TOMBSTONES)
        manifest.deleted += len(new)
        manifest.save(root)
        journal.end(root)
        return counts, new.tolist()


def delete_papers(root: str | Path, paper_ids: Sequence[str]) -> dict[str, int]:
    """Tombstone every passage of ``paper_ids`` (e.g. retractions); returns passages per paper."""
    return tombstone_papers(root, paper_ids)[0]
