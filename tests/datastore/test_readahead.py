"""Short-list read-ahead: prefetched re-scoring is bit-identical to the serial gather, and the advice
really reads the rows' pages (and only those) into the page cache."""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from pathlib import Path

import numpy as np
import pytest

from datastore.config import IVFPQConfig
from datastore.errors import DatastoreCorrupted
from datastore.index import base as index_base
from datastore.index.ivfpq import IVFPQIndex
from datastore.part_vectors import PartVectors
from datastore.readahead import PAGE, RowReadahead

DIM = 32
CFG = IVFPQConfig(nlist=32, m=8, nbits=8, nprobe=8, rescore=300)


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(40, DIM))
    x = centers[rng.integers(0, 40, n)] + 0.35 * rng.normal(size=(n, DIM))
    return x.astype(np.float32)


def saved_parts(tmp_path: Path, base: np.ndarray, sizes: list[int]) -> tuple[list[np.ndarray], list[int]]:
    """``base`` as fp16 .npy part files of ``sizes`` (a 0 makes an empty part), memory-mapped like finalize does."""
    arrays, starts, lo = [], [], 0
    for i, n in enumerate(sizes):
        path = tmp_path / f"part-{i}.npy"
        np.save(path, base[lo : lo + n].astype(np.float16))
        arrays.append(np.load(path, mmap_mode="r"))
        starts.append(lo)
        lo += n
    return arrays, starts


def test_prefetched_rescore_is_bit_identical_across_parts_tombstones_and_empty_lists(tmp_path: Path) -> None:
    base, queries = clustered(6000, 0), clustered(40, 1)
    arrays, starts = saved_parts(tmp_path, base, [2500, 0, 1700, 1800])
    sources = {
        "parts": PartVectors(list(zip(starts, arrays, strict=True)), DIM),
        "non-empty parts": PartVectors([(s, a) for s, a in zip(starts, arrays, strict=True) if len(a)]),
    }
    index = IVFPQIndex.from_config(CFG, dim=DIM)
    index.train(base[: index.training_size(len(base))], n_total=len(base))
    index.add(base, np.arange(len(base), dtype=np.int64))
    dead = np.zeros(len(base), dtype=np.uint8)
    dead[np.random.default_rng(2).choice(len(base), 900, replace=False)] = 1
    for source in sources.values():
        index.vectors = source
        for exclude in (None, dead, np.ones(len(base), dtype=np.uint8)):  # all deleted: every short list empty
            index.config = CFG.model_copy(update={"prefetch": False})
            serial = index.search(queries, 10, exclude=exclude)
            index.config = CFG
            fetched = index.search(queries, 10, exclude=exclude)
            assert np.array_equal(serial[1], fetched[1])
            assert np.array_equal(serial[0], fetched[0], equal_nan=True)
            if exclude is None:
                live = fetched[1]
            if exclude is dead:
                assert (fetched[1] >= 0).all() and not dead[fetched[1]].any()
            elif exclude is not None:
                assert (fetched[1] == -1).all()
    # the short lists did span the parts, so the prefetch went to several files
    spanned = {int(np.searchsorted(starts, i, side="right")) - 1 for i in live.ravel()}
    assert len(spanned) >= 2
    # many queries at once: grouped prefetch (PREFETCH_ROWS) gives what each query gets alone
    index.vectors = sources["parts"]
    together = index.search(np.repeat(queries, 60, axis=0), 10)[1].reshape(len(queries), 60, 10)
    alone = np.concatenate([index.search(queries[i : i + 1], 10)[1] for i in range(len(queries))])
    assert (together == alone[:, None, :]).all()


def test_part_vectors_prefetch_skips_out_of_range_ids_and_rows_are_unchanged(tmp_path: Path) -> None:
    base = clustered(3000, 3)
    arrays, starts = saved_parts(tmp_path, base, [1000, 0, 2000])
    vec = PartVectors(list(zip(starts, arrays, strict=True)), DIM)
    ids = np.array([0, 999, 1000, 2999, 5000], dtype=np.int64)
    vec.prefetch(ids)  # 5000 is past the end: skipped (prefetch is advice; rows() reports it)
    vec.prefetch(np.array([], dtype=np.int64))
    assert np.array_equal(vec.rows(ids[:4]), base[ids[:4]].astype(np.float16))
    with pytest.raises(DatastoreCorrupted, match="held by no part"):
        vec.rows(ids)
    assert [r.active for r in vec._readahead or []] == [True, True]  # one per non-empty part


def test_only_whole_file_memmaps_are_advised(tmp_path: Path) -> None:
    arrays, _ = saved_parts(tmp_path, clustered(500, 4), [500])
    assert RowReadahead(arrays[0]).active
    assert not RowReadahead(arrays[0][10:]).active  # a slice keeps the parent's offset: file offsets unknown
    assert not RowReadahead(np.zeros((5, DIM), np.float16)).active
    assert RowReadahead(np.zeros((5, DIM), np.float16)).rows(np.arange(3)) == 0


def test_rows_sharing_pages_are_advised_as_one_range(tmp_path: Path) -> None:
    arrays, _ = saved_parts(tmp_path, clustered(4000, 5), [4000])  # 64-byte rows: 64 per page
    ra = RowReadahead(arrays[0])
    assert ra.rows(np.arange(0, 300, dtype=np.int64)) == 1
    assert ra.rows(np.array([3000, 5, 10, 100], dtype=np.int64)) == 2  # sorted first; pages 0 and 1 touch
    assert ra.rows(np.array([0, 640, 1280, 3900], dtype=np.int64)) == 4


def resident(array: np.memmap) -> np.ndarray:
    """mincore() of the array's mapping: one bool per page."""
    libc = ctypes.CDLL(None, use_errno=True)
    start = array.ctypes.data - int(array.offset) % mmap.ALLOCATIONGRANULARITY
    size = int(array.offset) % mmap.ALLOCATIONGRANULARITY + array.nbytes
    vec = (ctypes.c_ubyte * ((size + PAGE - 1) // PAGE))()
    assert libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(size), vec) == 0, ctypes.get_errno()
    return (np.frombuffer(vec, dtype=np.uint8) & 1).astype(bool)


def evict(array: np.memmap) -> None:
    assert isinstance(array.base, mmap.mmap)
    array.base.madvise(mmap.MADV_DONTNEED)  # unmap our pages, else the kernel keeps them
    fd = os.open(array.filename, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "posix_fadvise") or not hasattr(mmap, "MADV_DONTNEED"), reason="needs Linux")
def test_advice_reads_the_rows_pages_and_only_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    path = tmp_path / "big.npy"
    np.save(path, rng.standard_normal((20000, 768)).astype(np.float16))  # 1536-byte rows, 30 MB
    array = np.load(path, mmap_mode="r")
    evict(array)
    if resident(array).mean() > 0.1:
        pytest.skip(f"this filesystem ({path.parent}) keeps pages cached after POSIX_FADV_DONTNEED (tmpfs?)")
    rows = np.array([7, 5000, 12345, 19999], dtype=np.int64)
    pages = {(int(array.offset) + int(r) * 1536 + b) // PAGE for r in rows for b in (0, 1535)}
    RowReadahead(array).rows(rows)
    deadline = time.monotonic() + 5
    while not resident(array)[sorted(pages)].all() and time.monotonic() < deadline:
        time.sleep(0.01)  # the advice only queues the reads
    now = resident(array)
    assert now[sorted(pages)].all()
    assert now.sum() <= len(pages) + 8  # no readahead around the rows (a little slack for other readers)


def test_rescore_gathers_into_one_reused_buffer_per_thread(tmp_path: Path) -> None:
    """The short list's rows land in a per-thread buffer reused by every query (a fresh few-MB array
    per query made glibc keep hundreds of MB of freed heap in a serving process), with the same rows
    and scores as a fresh gather."""
    from datastore.index import ivfpq

    base, queries = clustered(6000, 4), clustered(30, 5)
    arrays, starts = saved_parts(tmp_path, base, [2500, 0, 1700, 1800])
    sources = [PartVectors(list(zip(starts, arrays, strict=True)), DIM),
               PartVectors([(s, a) for s, a in zip(starts, arrays, strict=True) if len(a)])]
    ids = np.sort(np.random.default_rng(6).choice(6000, 700, replace=False))
    buf = np.full((1000, DIM), 7, dtype=np.float16)
    for source in sources:
        got = source.rows(ids, out=buf)
        assert np.shares_memory(got, buf) and got.shape == (700, DIM)
        assert np.array_equal(got, source.rows(ids)) and np.array_equal(got, base[ids].astype(np.float16))
    # ids past the last part's end are an error with a buffer as without one (the index and the parts disagree)
    tail = np.array([5998, 5999, 6000, 6001], dtype=np.int64)
    for out in (buf, None):
        with pytest.raises(DatastoreCorrupted, match="held by no part"):
            sources[0].rows(tail, out=out)
    scratch = index_base.RowScratch()
    rows = sources[0].rows(ids, out=scratch.rows(len(ids), DIM, np.dtype(np.float16)))
    assert np.array_equal(scratch.dot(rows, queries[0]), index_base.dot_rows(base[ids].astype(np.float16), queries[0]))
    np.testing.assert_allclose(scratch.dot(rows, queries[0]), base[ids].astype(np.float16).astype(np.float32) @ queries[0],
                               rtol=1e-5, atol=1e-4)

    index = IVFPQIndex.from_config(CFG, dim=DIM)
    index.train(base[: index.training_size(len(base))], n_total=len(base))
    index.add(base, np.arange(len(base), dtype=np.int64))
    index.vectors = sources[0]
    first = index.search(queries[:1], 10)
    with ivfpq._SCRATCH.take() as scratch:
        raw, wide = scratch.raw, scratch.wide
    assert raw is not None and len(raw) >= CFG.rescore
    later = index.search(queries, 10)
    with ivfpq._SCRATCH.take() as scratch:
        assert scratch.raw is raw and scratch.wide is wide  # no new buffer per query
    assert np.array_equal(first[1][0], later[1][0])


def test_scratch_sets_number_the_concurrent_searches_not_the_threads() -> None:
    """A server's thread pool runs searches on dozens of threads over time: buffers are lent per
    search, so 32 threads searching one after another share one set, and overlapping searches get one each."""
    import threading

    pool = index_base.ScratchPool()

    def search_once() -> None:
        with pool.take() as scratch:
            scratch.rows(1000, DIM, np.dtype(np.float16))

    for _ in range(32):
        t = threading.Thread(target=search_once)
        t.start()
        t.join()
    assert pool.created == 1
    inside, release = threading.Barrier(3), threading.Event()

    def overlapping() -> None:
        with pool.take():
            inside.wait()
            release.wait()

    threads = [threading.Thread(target=overlapping) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait()
    release.set()
    for t in threads:
        t.join()
    assert pool.created == 2  # the one set from before + one more for the second overlapping search
