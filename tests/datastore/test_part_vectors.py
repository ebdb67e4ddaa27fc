"""PartVectors: rows of several memory-mapped fp16 parts under global ids, checked against the rows
of one concatenated array; the re-scoring gather into a reused buffer; unknown ids and bad parts refused."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from datastore.errors import DatastoreCorrupted, DatastoreError
from datastore.index.base import RowScratch, VectorSource
from datastore.part_vectors import PartVectors

DIM = 48


def saved_parts(tmp_path: Path, base: np.ndarray, sizes: list[int], gap_after: int | None = None) -> list[tuple[int, np.ndarray]]:
    """``base`` split into fp16 .npy files of ``sizes`` (0: an empty part), memory-mapped as finalize
    maps them, as ``(start, memmap)``; ``gap_after``: leave 100 ids unheld after that part."""
    parts, lo, start = [], 0, 0
    for i, n in enumerate(sizes):
        path = tmp_path / f"part-{i}.npy"
        np.save(path, base[lo : lo + n])
        parts.append((start, np.load(path, mmap_mode="r")))
        lo += n
        start += n + (100 if i == gap_after else 0)
    return parts


@pytest.fixture
def base() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((5000, DIM)).astype(np.float16)


def test_rows_across_part_boundaries_equal_the_concatenated_array(tmp_path: Path, base: np.ndarray) -> None:
    parts = saved_parts(tmp_path, base, [1200, 0, 800, 3000])
    vec = PartVectors(parts[::-1], DIM)  # any order: sorted by start
    assert isinstance(vec, VectorSource)
    assert len(vec) == 5000 and vec.shape == (5000, DIM) and vec.dim == DIM and vec.dtype == np.float16
    # every boundary and its neighbours, plus a random sample
    edges = np.array([0, 1, 1199, 1200, 1201, 1999, 2000, 2001, 4998, 4999], dtype=np.int64)
    ids = np.unique(np.concatenate([edges, np.random.default_rng(1).choice(5000, 700, replace=False)]))
    assert np.array_equal(vec.rows(ids), base[ids])
    assert np.array_equal(vec.rows(np.array([1200, 1201], dtype=np.int64)), base[1200:1202])  # wholly in the part after the empty one
    assert vec.rows(np.zeros(0, dtype=np.int64)).shape == (0, DIM)
    # any order and repeats through [] (Datastore.vectors, finalize's training sample); an int is one row
    shuffled = np.array([4999, 3, 1200, 3, 0, 2000], dtype=np.int64)
    assert np.array_equal(vec[shuffled], base[shuffled])
    assert np.array_equal(vec[ids], base[ids]) and np.array_equal(vec[1999], base[1999])
    # ranges: a view of the part's map when one part holds them, a gather across parts
    inside = vec.range(2100, 2200)
    assert np.array_equal(inside, base[2100:2200]) and np.shares_memory(inside, parts[3][1])
    assert np.array_equal(vec.range(1100, 2100), base[1100:2100]) and vec.range(7, 7).shape == (0, DIM)
    assert vec.holds(np.array([0, 1199, 1200, 4999, 5000, -1])).tolist() == [True, True, True, True, False, False]


def test_rows_into_a_reused_buffer_allocate_no_rows(tmp_path: Path) -> None:
    """The re-scoring gathers each query's short list into one lent buffer (RowScratch): with ``out``
    no row buffer may be allocated per call, else a serving process's heap grows (see RowScratch)."""
    big = np.random.default_rng(2).standard_normal((20000, 768)).astype(np.float16)
    vec = PartVectors(saved_parts(tmp_path, big, [7000, 0, 13000]))
    scratch = RowScratch()
    buf = scratch.rows(1000, 768, vec.dtype)
    buf[:] = 7
    rng = np.random.default_rng(3)
    lists = [np.sort(rng.choice(20000, n, replace=False)) for n in (1000, 1000, 400)]
    vec.rows(lists[0], out=buf)  # warm: numpy's small caches
    for ids in lists:
        tracemalloc.start()  # numpy reports its buffers to tracemalloc
        try:
            got = vec.rows(ids, out=buf)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1000 * 768 * 2 // 8, f"rows(out=) allocated {peak} bytes at peak: a row buffer per call?"
        assert got.base is buf and got.shape == (len(ids), 768)
        assert np.array_equal(got, big[ids])
    assert np.array_equal(buf[400:], big[lists[1][400:]])  # rows past the short list left as they were
    assert scratch.rows(1000, 768, vec.dtype) is buf  # the same buffer serves the next query
    with pytest.raises(DatastoreError, match="out is"):
        vec.rows(lists[0], out=np.empty((999, 768), np.float16))
    with pytest.raises(DatastoreError, match="out is"):
        vec.rows(lists[2], out=np.empty((1000, 768), np.float32))


def test_unknown_ids_raise_and_prefetch_skips_them(tmp_path: Path, base: np.ndarray) -> None:
    """An id no part holds (below 0, past the end, in a gap between parts) means the index and the
    parts disagree: every read raises (a zero row would be a silent, wrong hit), prefetch only advises."""
    vec = PartVectors(saved_parts(tmp_path, base, [1000, 4000], gap_after=0))  # ids 1000..1099 unheld
    assert len(vec) == 5100
    assert vec.holds(np.array([999, 1000, 1099, 1100, 5099, 5100])).tolist() == [True, False, False, True, True, False]
    assert np.array_equal(vec.rows(np.array([998, 999, 1100, 5099])), base[[998, 999, 1000, 4999]])
    buf = np.zeros((10, DIM), np.float16)
    for bad in ([998, 1000], [1099], [5099, 5100], [-1, 0], [0, 1050, 2000]):
        ids = np.array(bad, dtype=np.int64)
        for out in (None, buf):
            with pytest.raises(DatastoreCorrupted, match="held by no part") as info:
                vec.rows(ids, out=out)
            assert "datastore verify" in info.value.hint
        with pytest.raises(DatastoreCorrupted):
            vec[ids[::-1]]
        vec.prefetch(ids)  # no error: the rows() that follows reports them
    with pytest.raises(DatastoreCorrupted):
        vec.range(990, 1010)
    with pytest.raises(DatastoreCorrupted):
        vec[5100]


def test_bad_parts_are_refused_with_a_hint(tmp_path: Path, base: np.ndarray) -> None:
    a, b = base[:100], base[100:300]
    with pytest.raises(DatastoreError, match=r"dims \[32, 48\]") as info:
        PartVectors([(0, a), (100, b[:, :32])])
    assert "same encoder" in info.value.hint
    with pytest.raises(DatastoreError, match="dim 64 was asked"):
        PartVectors([(0, a), (100, b)], 64)
    with pytest.raises(DatastoreError, match="overlap"):
        PartVectors([(0, a), (99, b)])
    with pytest.raises(DatastoreError, match="dtypes"):
        PartVectors([(0, a), (100, b.astype(np.float32))])
    with pytest.raises(DatastoreError, match="no vectors"):
        PartVectors([])
    with pytest.raises(DatastoreError, match="2-D"):
        PartVectors([(0, a[0])])
    empty = PartVectors([], DIM)  # a datastore with no vectors yet: dim given
    assert len(empty) == 0 and empty.rows(np.zeros(0, np.int64)).shape == (0, DIM)
    with pytest.raises(DatastoreCorrupted):
        empty.rows(np.array([0]))
    only_empty = PartVectors([(0, np.zeros((0, DIM), np.float16))], DIM)
    assert len(only_empty) == 0 and only_empty.dtype == np.float16
