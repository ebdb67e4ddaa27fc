"""choose_kind (count and RAM), sampling across parts, and a streaming build over fp16 memmap parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datastore.config import DatastoreConfig, IVFPQConfig
from datastore.errors import DatastoreError
from datastore.index.base import Exclusion
from datastore.index.build import add_sources, batch_rows, build_index, sample_rows
from datastore.index.choose import choose_kind, ram_bytes
from datastore.index.registry import load_index
from datastore.part_vectors import PartVectors


def test_auto_picks_by_count() -> None:
    config = DatastoreConfig()
    assert choose_kind(10_000, 768, config) == "flat"
    assert choose_kind(1_000_000, 768, config) == "hnsw"
    assert choose_kind(237_000_000, 768, config) == "ivfpq"


def test_auto_never_picks_what_does_not_fit_in_ram() -> None:
    # 150k x 768 float32 = 0.43 GiB: flat by count, but not under a 0.25 GiB budget, nor HNSW
    tight = DatastoreConfig(max_index_ram_gb=0.25)
    assert choose_kind(150_000, 768, tight) == "ivfpq"
    # counts raised so that flat/HNSW would be chosen for the full corpus: RAM still says no
    greedy = DatastoreConfig(auto_flat_max=10**9, auto_hnsw_max=10**9)
    assert ram_bytes("flat", 237_000_000, 768, greedy) > 725e9  # the reference flat index: ~725 GB
    assert choose_kind(237_000_000, 768, greedy) == "ivfpq"
    # 600k x 768: HNSW by count; its ~2.0 GB (vectors + graph) fits 2.5 GB but not 1.5 GB
    mid = DatastoreConfig(max_index_ram_gb=2.5, auto_flat_max=100_000, auto_hnsw_max=10**6)
    assert choose_kind(600_000, 768, mid) == "hnsw"
    assert choose_kind(600_000, 768, mid.model_copy(update={"max_index_ram_gb": 1.5})) == "ivfpq"


def test_explicit_kind_that_cannot_fit_is_refused() -> None:
    with pytest.raises(DatastoreError, match="needs 678.1 GB") as info:
        choose_kind(237_000_000, 768, DatastoreConfig(index="flat"))
    assert "ivfpq" in info.value.hint and "max_index_ram_gb" in info.value.hint
    assert choose_kind(237_000_000, 768, DatastoreConfig(index="ivfpq")) == "ivfpq"


def parts(tmp_path: Path, sizes: list[int], dim: int = 16, seed: int = 0) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out, start = [], 0
    for i, n in enumerate(sizes):
        path = tmp_path / f"part-{i:05d}.npy"
        np.save(path, (rng.normal(size=(n, dim)) + np.arange(dim) * 0.1).astype(np.float16))
        out.append((start, np.load(path, mmap_mode="r")))
        start += n
    return out


def test_sample_rows_draws_across_parts_without_repeats(tmp_path: Path) -> None:
    src = parts(tmp_path, [1000, 10, 3000])
    arrays = [a for _, a in src]
    sample = sample_rows(arrays, 800, seed=1)
    assert sample.shape == (800, 16) and sample.dtype == np.float32
    whole = np.vstack([np.asarray(a, dtype=np.float32) for a in arrays])
    rows = {tuple(r) for r in whole}
    assert all(tuple(r) in rows for r in sample)
    assert len({tuple(r) for r in sample}) == 800
    first = np.isin(sample[:, 0], whole[:1000, 0]).sum()
    assert 120 < first < 280  # ~ 800 * 1000/4010 = 200 from the first part
    assert np.array_equal(sample_rows(arrays, 800, seed=1), sample), "deterministic"
    with pytest.raises(DatastoreError, match="sample"):
        sample_rows(arrays, 5000)


def test_batches_are_bounded_by_build_memory() -> None:
    assert batch_rows(768, DatastoreConfig(build_memory_mb=64)) * 768 * 4 <= 16 * 2**20
    assert batch_rows(768, DatastoreConfig(build_memory_mb=4096)) > batch_rows(768, DatastoreConfig(build_memory_mb=64))


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_build_index_over_parts_then_add_a_part(kind: str, tmp_path: Path) -> None:
    src = parts(tmp_path, [2500, 1500, 2000])
    config = DatastoreConfig(index=kind, ivfpq=IVFPQConfig(nlist=16, m=4, nprobe=16, rescore=100), build_memory_mb=64)
    build_index(src[:2], config, directory=tmp_path / "index", workdir=tmp_path / "work")
    vectors = PartVectors(src)
    index = load_index(tmp_path / "index", 16, config, vectors=vectors)
    assert index.kind == kind and index.ntotal == 4000
    added = add_sources(index, src[2:], config)  # `datastore add`: only the new part, no retraining
    index.save(tmp_path / "index")
    index = load_index(tmp_path / "index", 16, config, vectors=vectors)
    assert added == 2000 and index.ntotal == 6000
    whole = np.vstack([np.asarray(a, dtype=np.float32) for _, a in src])
    queries = whole[[10, 3000, 5999]] * 2
    tomb = np.zeros(6000, dtype=np.uint8)
    scores, ids = index.search(queries, 5, exclude=Exclusion(tomb))
    exact = np.argsort(-(whole @ queries.T), axis=0)[:5].T
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids, exact, strict=True)]) >= 0.8
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", whole[ids], queries), rtol=1e-2, atol=1e-2)
