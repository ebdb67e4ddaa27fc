"""One contract suite run against every VectorIndex backend (real FAISS), through the public factories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datastore.config import DatastoreConfig, HNSWConfig, IVFPQConfig
from datastore.errors import DatastoreError
from datastore.index.base import Exclusion, VectorIndex
from datastore.index.registry import INDEXES, create_index, index_class, known_kinds, load_index
from datastore.part_vectors import PartVectors

DIM = 32
N = 3000
KINDS = ["flat", "hnsw", "ivfpq"]
CONFIG = DatastoreConfig(
    ivfpq=IVFPQConfig(nlist=16, m=8, nbits=8, nprobe=8, rescore=100),
    hnsw=HNSWConfig(m=16, ef_construction=100, ef_search=200),
    build_memory_mb=64,
)


def clustered(n: int, seed: int, *, normalize: bool = False) -> np.ndarray:
    """A Gaussian mixture with norms spread over 0.5..2 (inner product != cosine, as for contriever)."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(40, DIM))
    x = centers[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if not normalize:
        x *= rng.uniform(0.5, 2.0, size=(n, 1))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered(N, 0), clustered(40, 1)


def recall(ids: np.ndarray, base: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    truth = np.argsort(-(base @ queries.T), axis=0)[:k].T
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, truth, strict=True)]))


def filled(kind: str, base: np.ndarray, *, batch: int = 0, workdir: Path | None = None) -> VectorIndex:
    index = create_index(kind, DIM, CONFIG, workdir=workdir)
    n = index.training_size(len(base))
    if n:
        index.train(base[np.random.default_rng(0).choice(len(base), n, replace=False)], n_total=len(base))
    step = batch or len(base)
    for lo in range(0, len(base), step):
        index.add(base[lo : lo + step], np.arange(lo, min(len(base), lo + step), dtype=np.int64))
    if kind == "ivfpq":
        index.vectors = PartVectors([(0, base.astype(np.float16))])  # type: ignore[attr-defined]
    return index


def test_registry_lists_every_kind() -> None:
    assert known_kinds() == ["flat", "hnsw", "ivfpq"] == sorted(INDEXES.names())
    with pytest.raises(DatastoreError, match="use one of"):
        index_class("annoy")


@pytest.mark.parametrize("kind", KINDS)
class TestVectorIndexContract:
    def test_ranked_by_inner_product_not_cosine(self, kind: str, data) -> None:
        base, queries = data
        index = filled(kind, base)
        assert index.ntotal == N
        scores, ids = index.search(queries, 10)
        assert scores.shape == ids.shape == (40, 10)
        assert np.all(np.diff(scores, axis=1) <= 1e-5), "best first"
        assert recall(ids, base, queries) >= 0.9
        # the inner-product ranking differs from the cosine one on these vectors, so this can fail
        cosine = base / np.linalg.norm(base, axis=1, keepdims=True)
        assert recall(ids, cosine, queries) < 0.8
        np.testing.assert_allclose(scores[:, 0], np.sum(base[ids[:, 0]] * queries, axis=1), rtol=2e-3, atol=2e-3)

    def test_batches_equal_one_add(self, kind: str, data) -> None:
        base, queries = data
        s1, i1 = filled(kind, base).search(queries, 10)
        s2, i2 = filled(kind, base, batch=700).search(queries, 10)
        assert np.mean(i1 == i2) >= (1.0 if kind != "hnsw" else 0.9)
        if kind != "hnsw":
            np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)

    def test_ids_are_global_across_parts(self, kind: str, data) -> None:
        base, queries = data
        index = filled(kind, base, batch=1000)  # three "parts" starting at 0, 1000, 2000
        scores, ids = index.search(queries, 10)
        assert {int(i) // 1000 for i in ids.ravel()} == {0, 1, 2}
        # every returned id names the vector that was added under it
        np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", base[ids], queries), rtol=2e-3, atol=2e-3)

    def test_exclude_removes_hits_and_keeps_k(self, kind: str, data) -> None:
        base, queries = data
        index = filled(kind, base)
        _, before = index.search(queries, 60)
        tomb = np.zeros(N, dtype=np.uint8)
        tomb[before[:, :3].ravel()] = 1
        for exclude in (tomb, Exclusion(tomb)):
            scores, ids = index.search(queries, 10, exclude=exclude)
            assert (ids >= 0).all() and np.isfinite(scores).all(), "still k results"
            assert not np.isin(ids, np.flatnonzero(tomb)).any()
            if kind == "flat":  # exact: the next hits move up
                expected = [[i for i in row if not tomb[i]][:10] for row in before]
                assert ids.tolist() == expected

    def test_save_load_round_trip_mapped_and_not(self, kind: str, data, tmp_path: Path) -> None:
        base, queries = data
        index = filled(kind, base)
        s1, i1 = index.search(queries, 10)
        files = index.save(tmp_path)
        assert "index.json" in files and all((tmp_path / f).is_file() for f in files)
        vectors = PartVectors([(0, base[:1234].astype(np.float16)), (1234, base[1234:].astype(np.float16))])
        for mmap in (True, False):
            loaded = load_index(tmp_path, DIM, CONFIG, vectors=vectors, mmap=mmap)
            assert loaded.kind == kind and loaded.ntotal == N
            s2, i2 = loaded.search(queries, 10)
            assert np.array_equal(i1, i2)
            np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)

    def test_incremental_add_after_load(self, kind: str, data, tmp_path: Path) -> None:
        base, _queries = data
        filled(kind, base).save(tmp_path)
        rng = np.random.default_rng(7)
        extra = rng.normal(size=(200, DIM)).astype(np.float32)
        extra *= 10 / np.linalg.norm(extra, axis=1, keepdims=True)  # long, scattered: each is its own best hit
        loaded = load_index(tmp_path, DIM, CONFIG, vectors=PartVectors([(0, np.vstack([base, extra]).astype(np.float16))]))
        loaded.add(extra, np.arange(N, N + 200, dtype=np.int64))
        assert loaded.ntotal == N + 200
        _, ids = loaded.search(extra[:20], 1)
        assert ids.ravel().tolist() == list(range(N, N + 20))
        loaded.save(tmp_path)
        again = load_index(tmp_path, DIM, CONFIG, vectors=PartVectors([(0, np.vstack([base, extra]).astype(np.float16))]))
        assert again.ntotal == N + 200
        assert again.search(extra[:20], 1)[1].ravel().tolist() == list(range(N, N + 20))

    def test_bad_inputs_are_clear_errors(self, kind: str, data) -> None:
        base, _ = data
        index = filled(kind, base[:600])
        with pytest.raises(DatastoreError, match="dim") as info:
            index.add(np.ones((2, DIM + 1), dtype=np.float32), np.arange(600, 602, dtype=np.int64))
        assert info.value.hint
        with pytest.raises(DatastoreError, match="int64") as info:
            index.add(base[:2], np.arange(600, 602, dtype=np.int32))
        assert "np.arange" in info.value.hint
        with pytest.raises(DatastoreError, match="dim"):
            index.search(np.ones((1, DIM + 1), dtype=np.float32), 3)

    def test_memory_estimate_is_positive_and_bounded(self, kind: str, data) -> None:
        index = filled(kind, data[0])
        per_vector = index.memory_bytes() / index.ntotal
        assert 0 < per_vector <= DIM * 4 * 3


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_row_number_backends_refuse_gaps(kind: str, data) -> None:
    index = filled(kind, data[0][:100])
    with pytest.raises(DatastoreError, match="gaps") as info:
        index.add(data[0][:5], np.arange(200, 205, dtype=np.int64))
    assert "global-id order" in info.value.hint


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_k_larger_than_n_pads_with_minus_one(kind: str) -> None:
    index = filled(kind, clustered(5, 3))
    scores, ids = index.search(clustered(2, 4), 8)
    assert (ids[:, :5] >= 0).all() and (ids[:, 5:] == -1).all()
    assert np.isneginf(scores[:, 5:]).all()


def test_exclusion_mark_matches_a_rebuilt_one() -> None:
    tomb = np.zeros(1000, dtype=np.uint8)
    tomb[[3, 17]] = 1
    excl = Exclusion(tomb)
    excl.mark(np.array([17, 500, 999, 500]))
    tomb[[500, 999]] = 1
    fresh = Exclusion(tomb)
    assert excl.count == fresh.count == 4
    assert np.array_equal(excl.bits, fresh.bits)
    assert Exclusion(np.zeros(10, dtype=np.uint8)).selector() is None


def test_compat_per_shard_api(data, tmp_path: Path) -> None:
    """shard.py / builder.py use cls(dim, config).build(vectors) and cls.load(dir, dim, vectors=memmap)."""
    base, queries = data
    for kind in KINDS:
        cls = index_class(kind)
        sub = {"ivfpq": CONFIG.ivfpq, "hnsw": CONFIG.hnsw}.get(kind)
        index = cls(DIM, sub) if sub is not None else cls(DIM)
        index.build(base)
        out = tmp_path / kind
        index.save(out)
        loaded = cls.load(out, DIM, vectors=base.astype(np.float16), config=sub)
        assert loaded.ntotal == N
        assert recall(loaded.search(queries, 10)[1], base, queries) >= 0.9


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_mmap_load_maps_the_vectors_and_add_takes_a_private_copy(kind: str, data, tmp_path: Path) -> None:
    base, queries = data
    files = filled(kind, base).save(tmp_path)
    mapped = load_index(tmp_path, DIM, CONFIG, mmap=True)
    private = load_index(tmp_path, DIM, CONFIG, mmap=False)
    target = str((tmp_path / files[0]).resolve())
    assert any(line.endswith(target) for line in Path("/proc/self/maps").read_text().splitlines())
    assert mapped.memory_bytes() < private.memory_bytes()
    assert np.array_equal(mapped.search(queries, 5)[1], private.search(queries, 5)[1])
    mapped.add(base[:3], np.arange(N, N + 3, dtype=np.int64))  # the mapped file is never written
    assert mapped.ntotal == N + 3 and load_index(tmp_path, DIM, CONFIG).ntotal == N
