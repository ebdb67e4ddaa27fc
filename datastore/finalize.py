"""Finalize: finished parts -> one datastore (ids, deduplication, one global index, manifest).

``finalize`` orders the parts by name and gives them consecutive global id ranges, marks passages
whose content hash an earlier passage already has as tombstones (via the on-disk hash index),
chooses the index kind for the whole datastore, trains it once on a sample drawn across all parts
(bounded by ``build_memory_mb``), adds every part in bounded batches, stamps every file and writes
the manifest last. It starts over from the parts when rerun after a crash. ``add_parts`` appends
new parts to a finished datastore at the cost of the change: only the new passages are
deduplicated and added to the loaded index, which is not retrained.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from datastore import global_index, journal
from datastore.config import DatastoreConfig
from datastore.errors import DatastoreError, EncoderMismatch
from datastore.integrity import check_file
from datastore.locking import locked
from datastore.manifest import (
    INDEX_DIR,
    MANIFEST,
    TOMBSTONES,
    EncoderInfo,
    FileStamp,
    IndexInfo,
    Manifest,
    PartInfo,
    SourceInfo,
    build_id,
    now,
    read_manifest,
    stamp,
)
from datastore.part_vectors import PartVectors
from datastore.parts import VECTORS, finished_parts, parts_dir, remove_partials
from datastore.passage_store import FILE as PASSAGES
from datastore.passage_store import PassageStore
from datastore.tombstones import (
    HashIndex,
    create_tombstones,
    extend_tombstones,
    open_tombstones,
    sync,
)

log = logging.getLogger(__name__)
BUILD_DIR = "index.build"  # scratch space of an index being built (on-disk inverted lists)


def finalize(
    root: Path, encoder: EncoderInfo, config: DatastoreConfig, *, progress: bool = True,
    sources: Sequence[str] | None = None,
) -> Manifest:
    """Turn the finished parts under ``root`` into a complete datastore; returns its manifest.

    ``sources`` (the build's source specs) are recorded in the manifest when given.
    """
    root = Path(root)
    with locked(root):
        return finalize_locked(root, encoder, config, progress=progress, sources=sources)


def _same_parts(manifest: Manifest, parts: list[PartInfo]) -> bool:
    def key(p: PartInfo) -> tuple:
        return p.name, p.count, tuple(sorted((n, s.sha256) for n, s in p.files.items()))

    return [key(p) for p in manifest.parts] == [key(p) for p in parts]


def finalize_locked(
    root: Path, encoder: EncoderInfo, config: DatastoreConfig, *, progress: bool = True,
    sources: Sequence[str] | None = None,
) -> Manifest:
    """`finalize` for a caller that already holds ``root``'s write lock."""
    previous: Manifest | None = read_manifest(root) if (root / MANIFEST).is_file() else None
    parts = finished_parts(root)
    if previous is not None and previous.complete:
        if _same_parts(previous, parts):
            return previous
        raise DatastoreError(
            f"{root} is already a complete datastore and its parts changed since",
            hint="add parts with `openscholar datastore add` (add_parts), or delete manifest.json to re-finalize",
        )
    remove_partials(root)
    if not parts:
        raise DatastoreError(f"{root} has no finished parts to finalize", hint="build parts first (datastore build)")
    start = 0
    for p in parts:
        _check_dim(root, p, encoder)
        p.start = start
        start += p.count
    n = start
    create_tombstones(root, n)
    tomb = open_tombstones(root, n, writable=True)
    duplicates = _dedup(root, parts, tomb, fresh=True, progress=progress)
    sync(tomb)
    del tomb
    vectors = part_vectors(root, parts, encoder.dim)
    kind = global_index.choose(n, encoder.dim, config)
    index = global_index.create(kind, encoder.dim, config, workdir=root / BUILD_DIR)
    wanted = min(int(index.training_size(n)), n)
    if wanted:
        # a sample drawn across all parts (sorted ids: sequential reads of each part's memory map)
        ids = np.sort(np.random.default_rng(0).choice(n, size=wanted, replace=False))
        log.info("training the %s index on %d vectors drawn across %d parts", kind, len(ids), len(parts))
        index.train(np.asarray(vectors[ids], dtype=np.float32), n_total=n)
    _add_parts_to_index(index, parts, vectors, config, progress=progress)
    files = _save_index(root, index)
    shutil.rmtree(root / BUILD_DIR, ignore_errors=True)
    stamp_of_index = {f"{INDEX_DIR}/{f}": stamp(root / INDEX_DIR / f) for f in files}
    enc_chunking = previous.chunking if previous is not None and previous.chunking else config.chunking.model_dump()
    created = previous.created_at if previous is not None else now()
    manifest = Manifest(
        complete=True,
        encoder=encoder,
        chunking=enc_chunking,
        build_id=build_id(encoder.id, encoder.dim, enc_chunking, encoder.passage_prefix),
        created_at=created,
        updated_at=created,
        sources=list(sources) if sources is not None else (previous.sources if previous is not None else []),
        parts=parts,
        index=IndexInfo(kind=kind, ntotal=int(index.ntotal), params=_params(kind, config), files=files),
        files={**stamp_of_index, TOMBSTONES: stamp(root / TOMBSTONES)},
        passages=n,
        deleted=duplicates,
        duplicates=duplicates,
    )
    _merge_source_stats(manifest, parts)
    manifest.save(root)
    journal.end(root)
    return manifest


def add_parts(
    root: Path, new: Sequence[PartInfo], config: DatastoreConfig, *, progress: bool = True
) -> Manifest:
    """Append finished parts ``new`` to the complete datastore at ``root``: O(the new passages)."""
    root = Path(root)
    with locked(root):
        return add_parts_locked(root, new, config, progress=progress)


def add_parts_locked(root: Path, new: Sequence[PartInfo], config: DatastoreConfig, *, progress: bool = True) -> Manifest:
    manifest = journal.recover(root, read_manifest(root, require_complete=True))
    for rel in (TOMBSTONES, *(r for r in manifest.files if r.startswith(INDEX_DIR + "/"))):
        check_file(root, rel, manifest.files[rel])
    listed = {p.name for p in manifest.parts}
    last = max(listed, default="")
    fresh = sorted((p.model_copy(deep=True) for p in new if p.name not in listed), key=lambda p: p.name)
    if not fresh:
        return manifest
    if fresh[0].name <= last:
        raise DatastoreError(
            f"part {fresh[0].name} sorts before the datastore's last part {last}: global ids would move",
            hint="name new parts after the existing ones (part_name(len(manifest.parts) + i))",
        )
    start = manifest.next_id
    for p in fresh:
        _check_dim(root, p, manifest.encoder)
        p.start = start
        start += p.count
    n = start
    journal.begin(root, manifest, "add", passages=manifest.passages)
    extend_tombstones(root, n)
    tomb = open_tombstones(root, n, writable=True)
    duplicates = _dedup(root, fresh, tomb, fresh=False, progress=progress)
    sync(tomb)
    del tomb
    all_parts = [*manifest.parts, *fresh]
    vectors = part_vectors(root, all_parts, manifest.encoder.dim)
    assert manifest.index is not None
    kind = manifest.index.kind
    index = global_index.load(root / INDEX_DIR, manifest.encoder.dim, config, vectors, workdir=root / BUILD_DIR)
    _add_parts_to_index(index, fresh, vectors, config, progress=progress)
    files = _save_index(root, index)
    shutil.rmtree(root / BUILD_DIR, ignore_errors=True)
    old = manifest.files
    manifest.files = {r: s for r, s in old.items() if not r.startswith(INDEX_DIR + "/")}
    manifest.files.update({f"{INDEX_DIR}/{f}": restamp(root, f"{INDEX_DIR}/{f}", old.get(f"{INDEX_DIR}/{f}")) for f in files})
    manifest.files[TOMBSTONES] = stamp(root / TOMBSTONES)
    manifest.index = IndexInfo(kind=kind, ntotal=int(index.ntotal), params=manifest.index.params, files=files)
    manifest.parts = all_parts
    manifest.passages = n
    manifest.duplicates += duplicates
    manifest.deleted += duplicates
    _merge_source_stats(manifest, fresh)
    manifest.save(root)
    journal.end(root)
    return manifest


@dataclass
class CompactReport:
    """What `compact_index` did: segment counts, index bytes and codes before and after.

    ``ntotal`` is the codes the index holds afterwards (as ``manifest.index.ntotal``); ``dropped``
    the codes of tombstoned passages it left out (their ids stay tombstoned).
    """

    kind: str
    segments_before: int
    segments_after: int
    bytes_before: int
    bytes_after: int
    ntotal: int
    manifest: Manifest
    dropped: int = 0

    @property
    def changed(self) -> bool:
        return self.segments_after < self.segments_before or self.dropped > 0


def compact_index(root: Path, config: DatastoreConfig) -> CompactReport:
    """Merge the IVF-PQ index's segments (each `datastore add` leaves one more) into one, without
    the codes of tombstoned passages (deleted papers, duplicates).

    Under the write lock, crash-safe like `add`: the merged index is written to ``index.tmp/``
    (every code read and written once: O(index) disk I/O and free space, bounded RAM; the tombstone
    map is read list by list), swapped in for ``index/`` (kept as ``index.old/`` until the manifest
    commits), re-stamped, and the manifest written last. Passages, parts, tombstones and search
    results do not change: searches exclude tombstoned ids anyway, and keep excluding them (ids
    deleted after the compact still have codes). ``manifest.index.ntotal`` becomes the codes kept
    (``passages - deleted`` right after a compact; later adds count on from there).

    Runs when there is more than one segment or when the index holds codes of tombstoned ids
    (``index.ntotal > manifest.live``, an O(1) check); else, and for flat and HNSW indexes (one
    file: nothing to merge), nothing is written (``changed`` is False).
    """
    root = Path(root)
    with locked(root):
        manifest = journal.recover(root, read_manifest(root, require_complete=True))
        index_files = [r for r in manifest.files if r.startswith(INDEX_DIR + "/")]
        for rel in index_files:
            check_file(root, rel, manifest.files[rel])
        assert manifest.index is not None
        kind = manifest.index.kind
        size = sum(manifest.files[r].bytes for r in index_files)
        if kind != "ivfpq":
            return CompactReport(kind, 1, 1, size, size, manifest.index.ntotal, manifest)
        check_file(root, TOMBSTONES, manifest.files[TOMBSTONES])
        vectors = part_vectors(root, manifest.parts, manifest.encoder.dim)
        index = global_index.load(root / INDEX_DIR, manifest.encoder.dim, config, vectors, workdir=root / BUILD_DIR)
        before, codes_before = len(index.segments), int(index.ntotal)
        if before <= 1 and codes_before <= manifest.live:
            return CompactReport(kind, before, before, size, size, codes_before, manifest)
        journal.begin(root, manifest, "compact")
        tomb = open_tombstones(root, manifest.passages)  # read-only map: bounded memory, read list by list
        files = _save_index(root, index, compact=True, drop=tomb)
        del tomb
        after, codes_after = len(index.segments), int(index.ntotal)
        del index  # unmaps the merged segment (now under index/)
        shutil.rmtree(root / BUILD_DIR, ignore_errors=True)
        old = manifest.files
        manifest.files = {r: s for r, s in old.items() if not r.startswith(INDEX_DIR + "/")}
        manifest.files.update({f"{INDEX_DIR}/{f}": restamp(root, f"{INDEX_DIR}/{f}", old.get(f"{INDEX_DIR}/{f}")) for f in files})
        manifest.index = manifest.index.model_copy(update={"files": files, "ntotal": codes_after})
        manifest.save(root)
        journal.end(root)
        return CompactReport(kind, before, after, size, sum(manifest.files[f"{INDEX_DIR}/{f}"].bytes for f in files),
                             codes_after, manifest, dropped=codes_before - codes_after)


# -- helpers ---------------------------------------------------------------------------------------

def part_vectors(root: Path, parts: Sequence[PartInfo], dim: int) -> PartVectors:
    """The parts' vectors memory-mapped, under their global ids."""
    arrays = [np.load(parts_dir(root) / p.name / VECTORS, mmap_mode="r") if p.count else np.zeros((0, dim), np.float16) for p in parts]
    return PartVectors([(p.start, a) for p, a in zip(parts, arrays, strict=True)], dim)


def _check_dim(root: Path, part: PartInfo, encoder: EncoderInfo) -> None:
    if part.dim and part.dim != encoder.dim:
        raise EncoderMismatch(
            f"part {part.name} of {root} holds vectors of dim {part.dim} but the encoder {encoder.id} has dim {encoder.dim}",
            hint="build every part with the same encoder",
        )


def _dedup(root: Path, parts: Sequence[PartInfo], tomb: np.ndarray, *, fresh: bool, progress: bool) -> int:
    """Tombstone every passage whose content hash an earlier passage holds; returns how many."""
    hashes = HashIndex(root, fresh=fresh)
    total = 0
    try:
        with tqdm(total=sum(p.count for p in parts), desc="dedup", unit="passage", disable=not progress) as bar:
            for p in parts:
                store = PassageStore(parts_dir(root) / p.name / PASSAGES, readonly=True)
                try:
                    for local, h in store.iter_hashes():
                        dups = hashes.add(local + p.start, h)
                        tomb[dups] = 1
                        total += len(dups)
                        bar.update(len(local))
                finally:
                    store.close()
    finally:
        hashes.close()
    return total


def _batch_rows(config: DatastoreConfig, dim: int) -> int:
    budget = config.build_memory_mb * 2**20 // 4
    return max(1024, budget // (dim * 4))


def _add_parts_to_index(index: Any, parts: Sequence[PartInfo], vectors: PartVectors, config: DatastoreConfig, *, progress: bool) -> None:
    step = _batch_rows(config, vectors.dim)
    with tqdm(total=sum(p.count for p in parts), desc="index", unit="vector", disable=not progress) as bar:
        for p in parts:
            for lo in range(p.start, p.start + p.count, step):
                hi = min(lo + step, p.start + p.count)
                index.add(vectors.range(lo, hi), np.arange(lo, hi, dtype=np.int64))
                bar.update(hi - lo)


def _save_index(root: Path, index: Any, *, compact: bool = False, drop: np.ndarray | None = None) -> list[str]:
    """Write the index into ``index.tmp/`` and swap it in for ``index/`` (the previous one is kept as
    ``index.old/`` until the manifest commits); returns its file names. ``compact``: IVF-PQ with all
    its segments merged into one, without the codes of the ids ``drop`` (the tombstone map) marks."""
    tmp = root / (INDEX_DIR + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files = sorted(index.compact(tmp, drop=drop) if compact else index.save(tmp))
    old = root / journal.INDEX_OLD  # kept until the manifest commits (journal.end), for recovery
    if old.exists():
        shutil.rmtree(old)
    if (root / INDEX_DIR).exists():
        (root / INDEX_DIR).rename(old)
    tmp.rename(root / INDEX_DIR)
    return files


def _params(kind: str, config: DatastoreConfig) -> dict[str, Any]:
    cfg = global_index.kind_config(kind, config)
    return cfg.model_dump() if cfg is not None else {}


def _merge_source_stats(manifest: Manifest, parts: Sequence[PartInfo]) -> None:
    """Sum the per-part source statistics (build parts carry them in meta) into the manifest."""
    by_spec = {s.spec: s for s in manifest.source_stats}
    for p in parts:
        spec = p.meta.get("source")
        stats = p.meta.get("stats")
        if not spec or not isinstance(stats, dict):
            continue
        info = by_spec.setdefault(spec, SourceInfo(spec=spec))
        info.papers += int(stats.get("papers", 0))
        info.malformed += int(stats.get("malformed", 0))
        info.malformed_lines = sorted(info.malformed_lines + list(stats.get("malformed_lines", [])))[:5]
        manifest.papers_read += int(stats.get("papers", 0))
    manifest.source_stats = list(by_spec.values())


def restamp(root: Path, rel: str, old: FileStamp | None) -> FileStamp:
    """The stamp of ``rel``: the old one while size and mtime are unchanged (an index segment carried
    over by a hard link is not re-hashed: `add` stays O(change)), else a fresh one."""
    st = (root / rel).stat()
    if old is not None and (st.st_size, st.st_mtime_ns) == (old.bytes, old.mtime_ns):
        return old
    return stamp(root / rel)
