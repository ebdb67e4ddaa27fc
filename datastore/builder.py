"""Building, extending and pruning datastores: streaming, bounded memory, resumable, atomic.

Papers stream from the sources through the chunker into a shard buffer of at most ``shard_size``
passages (cut at paper boundaries). A full buffer is embedded in batches, written to
``shard-NNNNN.partial/`` and renamed into place; only then does the manifest list it. A kill at any
point leaves finished shards listed and at most one partial directory, which the next run deletes
and redoes, skipping the papers the finished shards already hold. Until the last shard of a batch is
listed, that batch is marked incomplete and its shards are never served.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from datastore.chunking import Chunker
from datastore.config import DatastoreConfig
from datastore.datastore import DELETED, Datastore, read_deleted, read_manifest
from datastore.errors import DatastoreError, EncoderMismatch
from datastore.index.base import index_class
from datastore.manifest import (
    MANIFEST,
    BatchInfo,
    EncoderInfo,
    Manifest,
    ShardInfo,
    SourceInfo,
    atomic_write_text,
    build_id,
    file_info,
    now,
)
from datastore.models import Passage
from datastore.passage_store import PassageStore
from datastore.shard import VECTORS
from datastore.sources import open_source

log = logging.getLogger(__name__)


class PassageEncoder(Protocol):
    """What a build needs of the embedder (retriever's ``Embedder`` satisfies it)."""

    model_id: str
    dim: int
    max_tokens: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


@dataclass
class BuildReport:
    root: Path
    batch: int
    papers: int = 0
    passages_added: int = 0
    duplicates: int = 0
    shards_written: int = 0
    shards_reused: int = 0
    sources: list[SourceInfo] = field(default_factory=list)


def content_hash(text: str) -> int:
    """Signed 64-bit hash of whitespace-normalized text: identical passages are stored once."""
    digest = hashlib.blake2b(" ".join(text.split()).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatastoreError(
                f"another process is writing {root}", hint="wait for it to finish", retryable=True
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _index_kind(config: DatastoreConfig, count: int) -> str:
    if config.index != "auto":
        return config.index
    if count <= config.auto_flat_max:
        return "flat"
    return "hnsw" if count <= config.auto_hnsw_max else "ivfpq"


def _index_params(config: DatastoreConfig) -> dict[str, Any]:
    return {"kind": config.index, "ivfpq": config.ivfpq.model_dump(), "hnsw": config.hnsw.model_dump()}


class DatastoreBuilder:
    """Writes datastores. ``encoder`` embeds passages; ``progress`` shows bars on stderr."""

    def __init__(self, encoder: PassageEncoder, config: DatastoreConfig | None = None, *, progress: bool = True) -> None:
        self.encoder = encoder
        self.config = config or DatastoreConfig()
        self.progress = progress
        self.chunker = Chunker(self.config.chunking, encoder.count_tokens, encoder.max_tokens)

    # -- public ---------------------------------------------------------------------------------
    def build(self, sources: Sequence[str], out: str | Path) -> BuildReport:
        """Build ``out`` from ``sources``, or resume the interrupted build there."""
        root = Path(out).expanduser()
        with _locked(root):
            manifest = self._start_or_resume(root, list(sources))
            report = self._run_batch(root, manifest, 0)
            manifest.complete = True
            manifest.save(root)
            return report

    def add(self, root: str | Path, sources: Sequence[str]) -> BuildReport:
        """Add papers from ``sources`` as new shards; existing shards are not touched."""
        root = Path(root).expanduser()
        with _locked(root):
            manifest = read_manifest(root)
            self._check_encoder(root, manifest)
            if not manifest.complete:
                raise DatastoreError(
                    f"the build of {root} did not finish", hint="resume it with `openscholar datastore build` first"
                )
            pending = [i for i, b in enumerate(manifest.batches) if not b.complete]
            if pending and manifest.batches[pending[-1]].sources != list(sources):
                raise DatastoreError(
                    f"an earlier add to {root} from {manifest.batches[pending[-1]].sources} did not finish",
                    hint="rerun that add to resume it before adding other sources",
                )
            if not pending:
                manifest.batches.append(BatchInfo(sources=list(sources), started_at=now()))
                manifest.save(root)
            return self._run_batch(root, manifest, len(manifest.batches) - 1)

    # -- internals ------------------------------------------------------------------------------
    def _check_encoder(self, root: Path, manifest: Manifest) -> None:
        enc = manifest.encoder
        if enc.id != self.encoder.model_id or enc.dim != self.encoder.dim:
            raise EncoderMismatch(
                f"datastore at {root} was built with encoder {enc.id} (dim {enc.dim}) but this build uses "
                f"{self.encoder.model_id} (dim {self.encoder.dim})",
                hint="use the datastore's encoder (--encoder) or build a new datastore with --out",
            )

    def _start_or_resume(self, root: Path, sources: list[str]) -> Manifest:
        chunking = self.config.chunking.model_dump()
        index = _index_params(self.config)
        bid = build_id(self.encoder.model_id, self.encoder.dim, chunking, index)
        if (root / MANIFEST).is_file():
            manifest = read_manifest(root)
            if manifest.complete:
                raise DatastoreError(
                    f"{root} already holds a complete datastore",
                    hint="add papers with `openscholar datastore add`, or build into a new --out directory",
                )
            if manifest.build_id != bid or manifest.batches[0].sources != sources:
                raise DatastoreError(
                    f"{root} holds an interrupted build with other settings or sources "
                    f"({manifest.batches[0].sources})",
                    hint="rerun that exact build to resume it, or delete the directory to start over",
                )
            log.info("resuming build of %s: %d finished shards kept", root, len(manifest.shards))
            return manifest
        if any(root.iterdir()) and not all(p.name == ".lock" for p in root.iterdir()):
            raise DatastoreError(f"{root} is not empty and is not a datastore", hint="choose an empty --out directory")
        enc = EncoderInfo(
            id=self.encoder.model_id,
            dim=self.encoder.dim,
            normalized=True,
            max_tokens=self.encoder.max_tokens,
            passage_prefix=getattr(getattr(self.encoder, "config", None), "passage_prefix", ""),
        )
        stamp = now()
        manifest = Manifest(
            encoder=enc, chunking=chunking, index=index, shard_size=self.config.shard_size, build_id=bid,
            created_at=stamp, updated_at=stamp, batches=[BatchInfo(sources=sources, started_at=stamp)],
        )
        manifest.save(root)
        return manifest

    def _run_batch(self, root: Path, manifest: Manifest, batch_idx: int) -> BuildReport:
        batch = manifest.batches[batch_idx]
        listed = {s.name for s in manifest.shards}
        for stale in root.glob("shard-*"):
            if stale.name not in listed:  # a partial shard of a killed run: redo it
                shutil.rmtree(stale)
        done = [s for s in manifest.shards if s.batch == batch_idx]
        skip = done[-1].papers_end if done else 0
        report = BuildReport(root=root, batch=batch_idx, shards_reused=len(done))
        seen: set[int] = set()
        for info in manifest.shards:
            seen.update(PassageStore(root / info.name / PassageStore.FILE, readonly=True).hashes())
        srcs = [open_source(spec, strict=self.config.strict) for spec in batch.sources]
        buffer: list[tuple[Passage, int]] = []
        papers = 0
        bar = tqdm(desc=f"papers ({root.name})", unit="paper", disable=not self.progress, initial=skip)
        for paper in itertools.chain.from_iterable(srcs):
            papers += 1
            if papers <= skip:
                continue
            bar.update(1)
            for passage in self.chunker.passages(paper):
                h = content_hash(passage.embed_text)
                if h in seen:
                    batch.duplicates += 1
                    continue
                seen.add(h)
                buffer.append((passage, h))
            if len(buffer) >= self.config.shard_size:
                self._write_shard(root, manifest, batch_idx, buffer, papers)
                report.shards_written += 1
                report.passages_added += len(buffer)
                buffer = []
        bar.close()
        if buffer or not manifest.shards:
            self._write_shard(root, manifest, batch_idx, buffer, papers)
            report.shards_written += 1
            report.passages_added += len(buffer)
        batch.papers_read = papers
        batch.source_stats = [
            SourceInfo(spec=spec, papers=s.stats.papers, malformed=s.stats.malformed, malformed_lines=s.stats.malformed_lines)
            for spec, s in zip(batch.sources, srcs, strict=True)
        ]
        batch.complete = True
        batch.finished_at = now()
        manifest.save(root)
        report.papers = papers
        report.duplicates = batch.duplicates
        report.sources = batch.source_stats
        return report

    def _write_shard(
        self, root: Path, manifest: Manifest, batch_idx: int, buffer: list[tuple[Passage, int]], papers_end: int
    ) -> None:
        name = f"shard-{len(manifest.shards):05d}"
        tmp = root / f"{name}.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        start = manifest.next_id
        rows = [(_with_id(p, start + i), h) for i, (p, h) in enumerate(buffer)]
        store = PassageStore(tmp / PassageStore.FILE, readonly=False)
        store.write(rows)
        store.close()
        dim = self.encoder.dim
        vectors = np.lib.format.open_memmap(tmp / VECTORS, mode="w+", dtype=np.float16, shape=(len(rows), dim))
        full = np.zeros((len(rows), dim), dtype=np.float32)
        step = self.config.batch_size
        with tqdm(total=len(rows), desc=f"embedding {name}", unit="passage", disable=not self.progress) as bar:
            for i in range(0, len(rows), step):
                emb = self.encoder.embed([p.embed_text for p, _ in rows[i : i + step]])
                full[i : i + len(emb)] = emb
                vectors[i : i + len(emb)] = emb
                bar.update(len(emb))
        vectors.flush()
        del vectors
        kind = _index_kind(self.config, len(rows))
        cls: Any = index_class(kind)
        params = {"ivfpq": self.config.ivfpq, "hnsw": self.config.hnsw}.get(kind)
        index = cls(dim, params) if params is not None else cls(dim)
        if len(rows):
            index.build(full)
        names = [PassageStore.FILE, VECTORS, *index.save(tmp)]
        files = {n: file_info(tmp / n) for n in names}
        tmp.rename(root / name)
        manifest.shards.append(
            ShardInfo(name=name, start=start, count=len(rows), index=kind, batch=batch_idx, papers_end=papers_end, files=files)
        )
        manifest.save(root)


def _with_id(p: Passage, pid: int) -> Passage:
    return Passage(
        passage_id=pid, paper_id=p.paper_id, title=p.title, text=p.text, chunk_index=p.chunk_index, year=p.year,
        venue=p.venue, authors=p.authors, url=p.url, citation_count=p.citation_count, extra=p.extra,
    )


def delete_papers(root: str | Path, paper_ids: Sequence[str]) -> dict[str, int]:
    """Tombstone every passage of ``paper_ids`` (e.g. retractions); returns passages per paper.

    Deleted passages are never returned by search or lookup again. Unknown ids raise.
    """
    root = Path(root).expanduser()
    with _locked(root):
        ds = Datastore.open(root, verify="fast")
        try:
            deleted = read_deleted(root)
            counts: dict[str, int] = {}
            missing = []
            for pid in paper_ids:
                ids = ds.passage_ids_of_papers([pid])
                if not ids:
                    missing.append(pid)
                    continue
                deleted[pid] = sorted(set(deleted.get(pid, [])) | set(ids))
                counts[pid] = len(ids)
            if missing:
                raise DatastoreError(
                    f"no passages for paper ids {missing} in {root}", hint="check the ids with `openscholar search --json`"
                )
            atomic_write_text(root / DELETED, json.dumps({"papers": deleted}, indent=1))
            manifest = read_manifest(root)
            manifest.deleted_passages = sum(len(v) for v in deleted.values())
            manifest.save(root)
            return counts
        finally:
            ds.close()

