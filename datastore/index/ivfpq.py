"""IVF-PQ over the whole datastore: trained once, filled in batches, inverted lists on disk.

Layout of a saved index directory::

    index.json               kind, dim, nlist, m, segments (name, ntotal), ...
    ivfpq.trained.faiss      the trained, empty index: coarse centroids + PQ codebooks (in RAM)
    seg-00000.faiss/.ivfdata one segment: FAISS OnDiskInvertedLists (codes + ids), memory-mapped

Building keeps at most ``memory_mb / 2`` of codes in RAM: full blocks are written to ``workdir``
and ``save`` merges them into a new on-disk segment (``OnDiskInvertedLists.merge_from_multiple``,
the machinery behind ``faiss.contrib.ondisk.merge_ondisk``). The first save makes segment 0; each
later ``add`` + ``save`` (``datastore add``) appends one small segment, so nothing is retrained or
rewritten. ``compact`` (``datastore compact``) merges the segments into one and, given the tombstone
map, leaves out the codes of deleted and duplicate passages (``ntotal`` counts the codes held). Searching stacks the segments' lists (``HStackInvertedLists``) behind one quantizer;
the lists are mapped read-only, so replicas share the page cache and only the quantizer is private.

A query visits ``nprobe`` lists (auto: ``plan_nprobe``), keeps the ``rescore`` best by PQ score (tombstones excluded by
an IDSelector inside FAISS) and re-scores that short list exactly from the fp16 vectors through a
``VectorSource``, touching only those rows of the parts' memory maps; their disk reads are queued
all at once first (``config.prefetch``, ``datastore.readahead``), not taken one page fault at a time.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from datastore.config import IVFPQConfig
from datastore.errors import DatastoreCorrupted, DatastoreError
from datastore.index.base import (
    Exclusion,
    ScratchPool,
    VectorSource,
    as_exclusion,
    as_queries,
    check_batch,
    check_metric,
    clean,
    empty_result,
    faiss_read,
    read_meta,
    write_meta,
)
from datastore.index.kmeans import coarse_centroids
from datastore.part_vectors import PartVectors

TRAINED = "ivfpq.trained.faiss"
MIN_POINTS_PER_LIST = 39  # FAISS warns below this
TRAIN_POINTS_PER_LIST = 64  # enough for good centroids; more mostly costs time
_SCRATCH = ScratchPool()  # buffers for the short list's rows, reused by every query (see RowScratch)
PREFETCH_ROWS = 16384  # short-list rows read ahead at once (24 MB at 768-d fp16): stays in the page cache until gathered


def pick_m(dim: int, wanted: int) -> int:
    """The largest sub-quantizer count <= wanted that divides dim."""
    for m in range(min(wanted, dim), 0, -1):
        if dim % m == 0:
            return m
    return 1


def plan_nlist(n_total: int, config: IVFPQConfig) -> int:
    """Inverted lists for a datastore of n_total vectors (config.nlist, else ~4 sqrt(n))."""
    return max(1, config.nlist or int(4 * math.sqrt(max(n_total, 1))))


def plan_nprobe(nlist: int, config: IVFPQConfig) -> int:
    """Lists visited per query: config.nprobe, else (0 = auto) 64 up to nlist 4096 and sqrt(nlist) beyond.

    A fixed nprobe probes a shrinking share of the corpus as nlist = 4 sqrt(N) grows; a fixed share
    (nprobe ~ nlist) would make the scan linear in N (237M: ~1,000 lists, ~3.8M codes per query).
    sqrt(nlist) is between: share 1/sqrt(nlist), codes scanned ~ N^0.75 (1M: 64 of 4000; 10M:
    95 of 8962; 237M: 249 of 61,579). Never more than nlist.
    """
    if config.nprobe:
        return int(config.nprobe)
    return int(min(nlist, max(64, math.ceil(math.sqrt(nlist)))))


class IVFPQIndex:
    kind: ClassVar[str] = "ivfpq"

    def __init__(
        self,
        dim: int,
        config: IVFPQConfig | None = None,
        *,
        vectors: VectorSource | np.ndarray | None = None,
        workdir: Path | None = None,
        memory_mb: int = 2048,
    ) -> None:
        self.dim = dim
        self.config = config or IVFPQConfig()
        self.vectors = _as_source(vectors)
        self.memory_mb = memory_mb
        self.block_bytes = memory_mb * 2**20 // 2  # codes + ids held in RAM before a block goes to disk
        self._workdir = Path(workdir) if workdir is not None else None
        self._own_workdir = False
        self._trained: Any = None  # empty trained index: template for blocks and segment headers
        self._searcher: Any = None  # trained index whose invlists are the stack below
        self._directory: Path | None = None  # where the loaded segments live
        # On-disk lists are held through their (quantizer-less) header index: freeing a detached
        # OnDiskInvertedLists from Python corrupts the heap in FAISS 1.15, freeing its index does not.
        self._segments: list[tuple[str, int, Any]] = []  # (name, ntotal, header index) saved
        self._blocks: list[tuple[str, int, Any]] = []  # (name, ntotal, header index) flushed to workdir, unsaved
        self._block: Any = None  # the block being filled (in RAM)
        self._stack: list[Any] = []  # keeps the python proxies of stacked lists alive
        self._dirty = True
        self._lock = threading.Lock()  # searches may come from several threads; (re)stacking is not atomic

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: IVFPQConfig | None = None,
        *,
        dim: int,
        metric: str = "ip",
        workdir: Path | None = None,
        memory_mb: int = 2048,
    ) -> IVFPQIndex:
        check_metric(metric)
        return cls(dim, config, workdir=workdir, memory_mb=memory_mb)

    @property
    def is_trained(self) -> bool:
        return self._trained is not None or self._searcher is not None

    def training_size(self, n_total: int) -> int:
        """~64 rows per list, at least 39 per list and 10k for the PQ, at most half of memory_mb as float32."""
        nlist = plan_nlist(n_total, self.config)
        wanted = max(nlist * TRAIN_POINTS_PER_LIST, 40 * 2**self.config.nbits)
        cap = max(1, (self.memory_mb * 2**20 // 2) // (4 * self.dim))
        return int(min(n_total, wanted, cap))

    def train(self, sample: np.ndarray, *, n_total: int | None = None) -> None:
        """Learn the coarse centroids and PQ codebooks from ``sample`` (rows drawn across all parts)."""
        x = np.ascontiguousarray(sample, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DatastoreError(f"training sample has shape {x.shape}, expected (n, {self.dim})", hint="sample the datastore's vectors")
        nbits = self.config.nbits
        if len(x) < 2**nbits:
            raise DatastoreError(
                f"IVF-PQ needs at least {2**nbits} vectors to train, got {len(x)}",
                hint="use index flat or hnsw for small datastores, or index auto",
            )
        nlist = min(plan_nlist(n_total or len(x), self.config), max(1, len(x) // MIN_POINTS_PER_LIST))
        m = pick_m(self.dim, self.config.m)
        quantizer = faiss.IndexFlatIP(self.dim)
        quantizer.add(coarse_centroids(x, nlist, seed=0))
        index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantizer.this.disown()  # type: ignore[attr-defined]  # faiss stubs lag the SWIG API
        index.train(x)  # the quantizer is already trained: this learns the PQ on residuals
        self._trained = index
        self._searcher = None
        self._dirty = True

    def _template(self) -> Any:
        if self._trained is None:
            if self._directory is None:
                raise DatastoreError(
                    "the IVF-PQ index is not trained",
                    hint="call train(sample) first (datastore.index.build.sample_rows draws one across the parts)",
                )
            self._trained = faiss_read(self._directory / TRAINED)
        return self._trained

    # -- adding ---------------------------------------------------------------------------------
    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if not self.is_trained:
            raise DatastoreError(
                "cannot add to an untrained IVF-PQ index",
                hint="call train(sample) first (datastore.index.build.sample_rows draws one across the parts)",
            )
        x, ids = check_batch(vectors, ids, self.dim)
        template = self._template()
        # FAISS encodes a batch through an (n x 2^nbits x m) float table: 49 KB per 768-d vector at
        # m 48, 1.6 GB for its internal 32k-row blocks. Feed it rows that keep the table within an
        # eighth of memory_mb (bench/index_global.py, 1M, memory_mb 512: add-phase anonymous peak
        # 1.34 GB -> 0.29 GB).
        rows = max(256, (self.memory_mb * 2**20 // 8) // (2 ** int(template.pq.nbits) * int(template.pq.M) * 4))
        for lo in range(0, len(x), rows):
            if self._block is None:
                self._block = faiss.clone_index(template)
            self._block.add_with_ids(x[lo : lo + rows], ids[lo : lo + rows])
            self._dirty = True
            if self._block.ntotal * (self._block.code_size + 8) >= self.block_bytes:
                self._flush_block()

    def build(self, vectors: np.ndarray) -> None:
        """Compatibility with the per-shard builder: train on a sample of ``vectors``, add them as 0..n-1."""
        n = len(vectors)
        take = self.training_size(n)
        rows = np.sort(np.random.default_rng(0).choice(n, take, replace=False)) if take < n else slice(None)
        self.train(np.asarray(vectors[rows], dtype=np.float32), n_total=n)
        for lo in range(0, n, 65536):
            self.add(vectors[lo : lo + 65536], np.arange(lo, min(n, lo + 65536), dtype=np.int64))
        if self.vectors is None:
            self.vectors = PartVectors([(0, np.asarray(vectors, dtype=np.float16))])

    def _workspace(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="ivfpq-build-"))
            self._own_workdir = True
        self._workdir.mkdir(parents=True, exist_ok=True)
        return self._workdir

    def _flush_block(self) -> None:
        work = self._workspace()
        name = f"block-{os.getpid()}-{id(self)}-{len(self._blocks):05d}"
        n = self._write_ondisk(work, name, [self._block.invlists])
        self._block = None
        self._blocks.append((name, n, _open_ondisk(work, name)))
        self._dirty = True

    # -- searching ------------------------------------------------------------------------------
    def _ready(self) -> Any:
        """The search index with every segment, flushed block and the open block stacked."""
        if not self._dirty and self._searcher is not None:
            return self._searcher
        with self._lock:
            if not self._dirty and self._searcher is not None:
                return self._searcher
            return self._restack()

    def _restack(self) -> Any:
        if self._searcher is None:
            self._searcher = faiss.clone_index(self._template())
        lists: list[Any] = [_lists(h) for _, _, h in self._segments + self._blocks]
        if self._block is not None:
            lists.append(self._block.invlists)
        ivf = self._searcher
        if not lists:
            il: Any = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
            lists = [il]
        elif len(lists) == 1:
            il = lists[0]
        else:
            vec = faiss.InvertedListsPtrVector()  # type: ignore[attr-defined]  # faiss stubs lag the SWIG API
            for one in lists:
                vec.push_back(one)
            il = faiss.HStackInvertedLists(len(lists), vec.data())
        ivf.replace_invlists(il, False)
        ivf.ntotal = self.ntotal
        self._stack = [il, *lists]
        self._dirty = False
        return ivf

    def search(
        self, queries: np.ndarray, k: int, *, exclude: np.ndarray | Exclusion | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = as_queries(queries, self.dim)
        if not self.is_trained or self.ntotal == 0 or k <= 0:
            return empty_result(len(q), max(k, 0))
        index = self._ready()
        excl = as_exclusion(exclude)
        sel = excl.selector() if excl is not None else None
        params = faiss.SearchParametersIVF(nprobe=plan_nprobe(int(index.nlist), self.config))  # type: ignore[call-arg]  # faiss stubs lag the SWIG API
        if sel is not None:
            params.sel = sel
        rescore = self.config.rescore if self.vectors is not None else 0
        short = max(k, rescore)
        scores, ids = index.search(q, short, params=params)
        if not rescore:
            return clean(scores[:, :k], ids[:, :k])
        return self._rescore(q, ids, k)

    def _rescore(self, q: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of each query's short list; rows not in the page cache are read ahead in groups
        of queries (``config.prefetch``: all of a group's reads queued at once, then gathered)."""
        assert self.vectors is not None
        out_s, out_i = empty_result(len(q), k)
        cands = [np.sort(ids[row][ids[row] >= 0]) for row in range(len(q))]  # sorted reads are kinder to the page cache
        fetched = 0  # queries whose rows were prefetched
        dtype = getattr(self.vectors, "dtype", None)
        if dtype is None:  # a VectorSource without the attribute: read it off an empty gather
            dtype = self.vectors.rows(np.zeros(0, dtype=np.int64)).dtype
        with _SCRATCH.take() as scratch:
            for row, cand in enumerate(cands):
                if self.config.prefetch and row == fetched:
                    fetched = self._prefetch(cands, row)
                if len(cand) == 0:
                    continue
                buf = scratch.rows(len(cand), self.dim, dtype)
                exact = scratch.dot(self.vectors.rows(cand, out=buf), q[row])
                top = np.argsort(-exact, kind="stable")[:k]
                out_s[row, : len(top)] = exact[top]
                out_i[row, : len(top)] = cand[top]
        return out_s, out_i

    def _prefetch(self, cands: list[np.ndarray], first: int) -> int:
        """Queue the reads of queries ``first``.. up to PREFETCH_ROWS rows (at least one query); returns the next query."""
        assert self.vectors is not None
        end, rows = first, 0
        while end < len(cands) and (end == first or rows + len(cands[end]) <= PREFETCH_ROWS):
            rows += len(cands[end])
            end += 1
        group = cands[first:end]
        self.vectors.prefetch(group[0] if len(group) == 1 else np.unique(np.concatenate(group)))
        return end

    # -- persistence ----------------------------------------------------------------------------
    def save(self, directory: Path) -> list[str]:
        """Merge what was added since the last save into a new on-disk segment; returns all file names."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        template = self._template()
        if not (directory / TRAINED).exists() or self._directory is None or directory.resolve() != self._directory.resolve():
            faiss.write_index(template, str(directory / TRAINED))
        if self._directory is not None and directory.resolve() != self._directory.resolve():
            for name, _, _ in self._segments:  # saving elsewhere: carry the existing segments over
                for ext in (".faiss", ".ivfdata"):
                    _link_or_copy(self._directory / (name + ext), directory / (name + ext))
        pending = self._pending_lists()
        if pending:
            name = self._next_segment_name()
            n = self._write_ondisk(directory, name, pending)
            self._discard_pending()
            self._segments.append((name, n, _open_ondisk(directory, name)))
        self._directory = directory
        self._dirty = True
        return self._write_meta(directory)

    def compact(self, directory: Path | None = None, *, drop: np.ndarray | None = None) -> list[str]:
        """Merge every segment (and unsaved adds) into one new segment; returns all file names.

        Each ``datastore add`` leaves one more segment, and searching more than one stacks their
        lists (copying the probed ones per query). This rewrites all codes once (O(codes) disk I/O,
        bounded RAM); the old segment files are removed after index.json points at the new one
        (processes that still map them keep reading them until they reopen).

        ``drop``: a uint8 map over ids (the tombstone map, memory-mapped; nonzero = dropped, ids past
        its end are kept). The codes of dropped ids are left out of the merged lists, so they stop
        costing disk and scan time (a search excludes them anyway, so results do not change);
        ``ntotal`` then counts the codes kept. With ``drop``, one segment that holds dropped codes is
        rewritten too. The map is read list by list, never loaded whole.
        """
        directory = Path(directory) if directory is not None else self._directory
        if directory is None:
            raise DatastoreError("nothing to compact: the index was never saved", hint="call save(directory) first")
        if drop is None and len(self._segments) + len(self._blocks) + (self._block is not None) <= 1:
            return self.save(directory)
        files = self.save(directory)  # everything into segments first, all in ``directory``
        lists = [_lists(h) for _, _, h in self._segments]
        sizes = _live_sizes(lists, drop) if drop is not None else None
        if len(self._segments) <= 1 and (sizes is None or int(sizes.sum()) == self.ntotal):
            return files  # one segment and nothing to drop: already compact
        name = self._next_segment_name()
        n = self._write_ondisk(directory, name, lists, drop=drop, sizes=sizes)
        old = [seg for seg, _, _ in self._segments]
        del lists
        self._discard_pending()  # points the searcher away from the old lists
        self._segments = [(name, n, _open_ondisk(directory, name))]
        self._dirty = True
        files = self._write_meta(directory)
        for seg in old:
            for ext in (".faiss", ".ivfdata"):
                (directory / (seg + ext)).unlink(missing_ok=True)
        return files

    def _next_segment_name(self) -> str:
        used = [int(name.split("-")[1]) for name, _, _ in self._segments]
        return f"seg-{max(used, default=-1) + 1:05d}"

    def _write_meta(self, directory: Path) -> list[str]:
        segs = [{"name": name, "ntotal": n} for name, n, _ in self._segments]
        ivf = self._template()
        meta = write_meta(
            directory,
            {
                "kind": self.kind, "dim": self.dim, "ntotal": self.ntotal, "metric": "ip", "nlist": int(ivf.nlist),
                "m": int(ivf.pq.M), "nbits": int(ivf.pq.nbits), "segments": segs,
            },
        )
        files = [meta, TRAINED]
        for name, _, _ in self._segments:
            files += [name + ".faiss", name + ".ivfdata"]
        return files

    def _pending_lists(self) -> list[Any]:
        lists = [_lists(h) for _, _, h in self._blocks]
        if self._block is not None and self._block.ntotal:
            lists.append(self._block.invlists)
        return lists

    def _write_ondisk(
        self, directory: Path, name: str, lists: list[Any], *, drop: np.ndarray | None = None,
        sizes: np.ndarray | None = None,
    ) -> int:
        """Merge ``lists`` into ``name``.ivfdata (OnDiskInvertedLists) + its header ``name``.faiss.

        ``drop`` (see ``compact``): entries whose id it marks are skipped; ``sizes`` are the kept
        entries per list when already counted (``_live_sizes``).
        """
        template = self._template()
        data = directory / (name + ".ivfdata")
        for stale in (data, directory / (name + ".faiss")):
            stale.unlink(missing_ok=True)  # a crashed save's leftovers
        ondisk = faiss.OnDiskInvertedLists(template.nlist, template.code_size, str(data))
        if drop is not None:
            n = _merge_live(ondisk, lists, drop, sizes if sizes is not None else _live_sizes(lists, drop))
        else:
            vec = faiss.InvertedListsPtrVector()  # type: ignore[attr-defined]  # faiss stubs lag the SWIG API
            for il in lists:
                vec.push_back(il)
            with _stdout_to_stderr():  # FAISS printf()s "resizing ..." to stdout
                n = int(ondisk.merge_from_multiple(vec.data(), vec.size(), False))
        # the header carries only the lists: an empty quantizer keeps it (and its RAM when read) small
        quantizer = faiss.IndexFlatIP(self.dim)
        header = faiss.IndexIVFPQ(
            quantizer, self.dim, template.nlist, template.pq.M, template.pq.nbits, faiss.METRIC_INNER_PRODUCT
        )
        header.own_fields = True
        quantizer.this.disown()  # type: ignore[attr-defined]  # faiss stubs lag the SWIG API
        header.replace_invlists(ondisk, True)
        ondisk.this.disown()  # type: ignore[attr-defined]  # faiss stubs lag the SWIG API
        header.ntotal = n
        tmp = directory / (name + ".faiss.tmp")
        faiss.write_index(header, str(tmp))
        del header  # unmaps the writable mapping
        os.replace(tmp, directory / (name + ".faiss"))
        return n

    def _discard_pending(self) -> None:
        if self._searcher is not None:  # point the searcher away from the lists about to go
            empty = faiss.ArrayInvertedLists(self._searcher.nlist, self._searcher.code_size)
            self._searcher.replace_invlists(empty, True)
            empty.this.disown()  # type: ignore[attr-defined]  # faiss stubs lag the SWIG API
        self._stack = []
        work = self._workdir
        names = [name for name, _, _ in self._blocks]
        self._blocks = []  # frees the headers, which unmap their lists
        for name in names:
            if work is not None:
                for ext in (".faiss", ".ivfdata"):
                    (work / (name + ext)).unlink(missing_ok=True)
        self._block = None
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir, self._own_workdir = None, False

    @classmethod
    def load(
        cls,
        directory: Path,
        dim: int,
        config: IVFPQConfig | None = None,
        *,
        vectors: VectorSource | np.ndarray | None = None,
        mmap: bool = True,
        workdir: Path | None = None,
        memory_mb: int = 2048,
    ) -> IVFPQIndex:
        """Open a saved index: quantizer in RAM, every segment's lists mapped read-only (``mmap`` is
        always on for the lists; they can be far larger than RAM)."""
        directory = Path(directory)
        meta = read_meta(directory)
        if meta.get("kind") != cls.kind:
            raise DatastoreError(f"{directory} holds a {meta.get('kind')} index, not ivfpq", hint="use load_index()")
        if int(meta.get("dim", -1)) != dim:
            raise DatastoreError(f"index in {directory} has dim {meta.get('dim')}, expected {dim}", hint="rebuild the index")
        self = cls(dim, config, vectors=vectors, workdir=workdir, memory_mb=memory_mb)
        self._searcher = faiss_read(directory / TRAINED)
        self._directory = directory
        for seg in meta.get("segments", []):
            header = _open_ondisk(directory, seg["name"])
            il = _lists(header)
            if int(il.compute_ntotal()) != int(seg["ntotal"]):
                raise DatastoreCorrupted(
                    f"segment {seg['name']} of {directory} holds {il.compute_ntotal()} vectors, index.json says {seg['ntotal']}",
                    hint="rebuild the index",
                )
            self._segments.append((seg["name"], int(seg["ntotal"]), header))
        self._ready()  # stack now: serving then only reads
        return self

    # -- figures --------------------------------------------------------------------------------
    @property
    def segments(self) -> list[str]:
        """Names of the saved segments (one per save that added vectors; ``compact`` merges them)."""
        return [name for name, _, _ in self._segments]

    @property
    def ntotal(self) -> int:
        n = sum(n for _, n, _ in self._segments) + sum(n for _, n, _ in self._blocks)
        return n + (int(self._block.ntotal) if self._block is not None else 0)

    def memory_bytes(self) -> int:
        """Quantizer + codebooks (+ the open block while building); the lists are mapped."""
        ref = self._searcher if self._searcher is not None else self._trained
        if ref is None:
            return 0
        fixed = int(ref.nlist) * self.dim * 4 + self.dim * 2 ** int(ref.pq.nbits) * 4
        block = int(self._block.ntotal) * (int(ref.code_size) + 8) if self._block is not None else 0
        return fixed + block

    def disk_bytes(self) -> int:
        if self._directory is None:
            return 0
        return sum(p.stat().st_size for p in self._directory.iterdir() if p.is_file())


def _as_source(vectors: VectorSource | np.ndarray | None) -> VectorSource | None:
    if isinstance(vectors, np.ndarray):  # a memmap of one part (the per-shard layout)
        return PartVectors([(0, vectors)])
    return vectors


def _lists(header: Any) -> Any:
    """The inverted lists of a header index (owned by the header: keep it alive while in use)."""
    return faiss.extract_index_ivf(header).invlists


def _list_ids(il: Any, list_no: int, n: int) -> np.ndarray:
    """A copy of the ``n`` ids of list ``list_no`` in ``il``."""
    ptr = il.get_ids(list_no)
    ids = np.array(faiss.rev_swig_ptr(ptr, n), dtype=np.int64)
    il.release_ids(list_no, ptr)
    return ids


def _entries(il: Any, list_no: int) -> tuple[np.ndarray, np.ndarray]:
    """Copies of list ``list_no``'s ids and codes (n x code_size) in ``il``."""
    n = int(il.list_size(list_no))
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, int(il.code_size)), dtype=np.uint8)
    ids = _list_ids(il, list_no, n)
    codes_ptr = il.get_codes(list_no)
    codes = np.array(faiss.rev_swig_ptr(codes_ptr, n * int(il.code_size)), dtype=np.uint8).reshape(n, -1)
    il.release_codes(list_no, codes_ptr)
    return ids, codes


def _kept(ids: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """True for the ids ``drop`` does not mark (ids past its end are kept)."""
    keep = np.ones(len(ids), dtype=bool)
    inside = (ids >= 0) & (ids < len(drop))
    keep[inside] = np.asarray(drop[ids[inside]]) == 0
    return keep


def _live_sizes(lists: list[Any], drop: np.ndarray) -> np.ndarray:
    """Entries per inverted list, over all ``lists``, whose id ``drop`` does not mark (reads ids only)."""
    nlist = int(lists[0].nlist) if lists else 0
    sizes = np.zeros(nlist, dtype=np.uint64)
    for list_no in range(nlist):
        for il in lists:
            n = int(il.list_size(list_no))
            if n:
                sizes[list_no] += int(_kept(_list_ids(il, list_no, n), drop).sum())
    return sizes


def _merge_live(ondisk: Any, lists: list[Any], drop: np.ndarray, sizes: np.ndarray) -> int:
    """``merge_from_multiple`` without the entries ``drop`` marks: the file is sized once from
    ``sizes`` (each list exactly its kept entries, in segment order as the merge lays them out),
    then filled list by list, so RAM holds one list at a time."""
    code_size = int(ondisk.code_size)
    total = int(sizes.sum())
    with _stdout_to_stderr():  # FAISS printf()s "resizing ..." to stdout
        ondisk.update_totsize(max(total * (8 + code_size), 1))  # mmap refuses 0 bytes: an empty index keeps 1
    ondisk.set_all_lists_sizes(faiss.swig_ptr(np.ascontiguousarray(sizes, dtype=np.uint64)))
    for list_no in range(len(sizes)):
        if not sizes[list_no]:
            continue
        parts = [_entries(il, list_no) for il in lists]
        ids = np.concatenate([i for i, _ in parts])
        codes = np.concatenate([c for _, c in parts])
        keep = _kept(ids, drop)
        ids, codes = np.ascontiguousarray(ids[keep]), np.ascontiguousarray(codes[keep])
        if len(ids) != int(sizes[list_no]):
            raise DatastoreError(
                f"inverted list {list_no} changed while compacting ({len(ids)} kept entries, {int(sizes[list_no])} counted)",
                hint="the drop map changed meanwhile: compact under the datastore's write lock, then run it again",
            )
        ondisk.update_entries(list_no, 0, len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
    return total


def _open_ondisk(directory: Path, name: str) -> Any:
    """The header index of ``name``, its lists mapped read-only from ``directory`` (wherever it moved)."""
    flags = faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY
    with _stdout_to_stderr():  # FAISS printf()s the relocated file name to stdout
        return faiss_read(directory / (name + ".faiss"), flags)


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send C-level writes to fd 1 to fd 2 meanwhile, so `--json` output on stdout stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
