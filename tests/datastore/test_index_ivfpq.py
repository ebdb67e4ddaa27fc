"""IVF-PQ specifics: recall with re-scoring, bounded-RAM builds, on-disk mapped lists, training errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datastore.config import DatastoreConfig, IVFPQConfig
from datastore.errors import DatastoreError
from datastore.index import kmeans
from datastore.index.base import read_meta
from datastore.index.ivfpq import IVFPQIndex
from datastore.index.registry import create_index, load_index
from datastore.part_vectors import PartVectors

DIM = 32
CFG = IVFPQConfig(nlist=32, m=8, nbits=8, nprobe=8, rescore=100)


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(60, DIM))
    x = centers[rng.integers(0, 60, n)] + 0.35 * rng.normal(size=(n, DIM))
    x *= rng.uniform(0.5, 2.0, size=(n, 1)) / np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered(8000, 0), clustered(60, 1)


def trained(base: np.ndarray, config: IVFPQConfig = CFG, **kw: object) -> IVFPQIndex:
    index = IVFPQIndex.from_config(config, dim=DIM, **kw)  # type: ignore[arg-type]
    index.train(base[: index.training_size(len(base))], n_total=len(base))
    return index


def recall_at_10(ids: np.ndarray, base: np.ndarray, queries: np.ndarray) -> float:
    truth = np.argsort(-(base @ queries.T), axis=0)[:10].T
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)]))


def test_recall_with_rescoring_and_its_gain_over_raw_pq(data) -> None:
    base, queries = data
    index = trained(base)
    index.add(base, np.arange(len(base), dtype=np.int64))
    _, raw = index.search(queries, 10)  # no VectorSource: PQ scores only
    index.vectors = PartVectors([(0, base.astype(np.float16))])
    _, rescored = index.search(queries, 10)
    assert recall_at_10(rescored, base, queries) >= 0.95
    assert recall_at_10(rescored, base, queries) > recall_at_10(raw, base, queries) + 0.05


def test_untrained_add_and_tiny_sample_are_clear_errors(data) -> None:
    index = IVFPQIndex.from_config(CFG, dim=DIM)
    with pytest.raises(DatastoreError, match="untrained") as info:
        index.add(data[0][:10], np.arange(10, dtype=np.int64))
    assert "train(sample)" in info.value.hint
    with pytest.raises(DatastoreError, match="at least 256"):
        index.train(data[0][:100])


def test_build_ram_is_bounded_by_blocks_on_disk(data, tmp_path: Path) -> None:
    """A small block budget spills codes to workdir; the merged segment equals an all-in-RAM build."""
    base, queries = data
    work = tmp_path / "work"
    small = trained(base, workdir=work)
    small.block_bytes = 16 * 1000  # 1000 codes of 8 bytes + 8-byte ids per block
    big = trained(base)
    for lo in range(0, len(base), 500):
        ids = np.arange(lo, lo + 500, dtype=np.int64)
        small.add(base[lo : lo + 500], ids)
        big.add(base[lo : lo + 500], ids)
    assert len(small._blocks) >= 7 and len(list(work.glob("block-*.faiss"))) == len(small._blocks)
    assert small.memory_bytes() < big.memory_bytes()
    _s_small, i_small = small.search(queries, 10)  # unsaved blocks are searchable too
    small.save(tmp_path / "a")
    big.save(tmp_path / "b")
    assert not list(work.glob("block-*")), "blocks are merged and removed by save"
    a = load_index(tmp_path / "a", DIM, DatastoreConfig(ivfpq=CFG))
    b = load_index(tmp_path / "b", DIM, DatastoreConfig(ivfpq=CFG))
    assert a.ntotal == b.ntotal == len(base)
    _sa, ia = a.search(queries, 10)
    _sb, ib = b.search(queries, 10)
    assert np.array_equal(np.sort(ia, axis=1), np.sort(ib, axis=1)) and np.array_equal(ia, i_small)


def test_loaded_lists_are_mapped_read_only_not_in_ram(data, tmp_path: Path) -> None:
    base, queries = data
    index = trained(base)
    index.add(base, np.arange(len(base), dtype=np.int64))
    files = index.save(tmp_path)
    assert "seg-00000.ivfdata" in files and "ivfpq.trained.faiss" in files
    loaded = load_index(tmp_path, DIM, DatastoreConfig(ivfpq=CFG))
    loaded.search(queries, 10)
    data_file = str((tmp_path / "seg-00000.ivfdata").resolve())
    maps = [line for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith(data_file)]
    assert maps and all(line.split()[1].startswith("r-") and line.split()[1].endswith("s") for line in maps)
    assert loaded.memory_bytes() < (tmp_path / "seg-00000.ivfdata").stat().st_size


def test_moved_directory_and_save_elsewhere_keep_segments(data, tmp_path: Path) -> None:
    base, queries = data
    index = trained(base)
    index.add(base[:4000], np.arange(4000, dtype=np.int64))
    index.save(tmp_path / "one")
    (tmp_path / "one").rename(tmp_path / "moved")  # lists are found next to the header, wherever it is
    loaded = load_index(tmp_path / "moved", DIM, DatastoreConfig(ivfpq=CFG))
    loaded.add(base[4000:], np.arange(4000, 8000, dtype=np.int64))
    files = loaded.save(tmp_path / "two")
    assert {"seg-00000.ivfdata", "seg-00001.ivfdata"} <= set(files)
    again = load_index(tmp_path / "two", DIM, DatastoreConfig(ivfpq=CFG), vectors=PartVectors([(0, base)]))
    assert again.ntotal == 8000
    assert recall_at_10(again.search(queries, 10)[1], base, queries) >= 0.95


def test_training_sample_is_bounded_by_build_memory() -> None:
    index = create_index("ivfpq", 768, DatastoreConfig(build_memory_mb=64))
    assert index.training_size(1_000) == 1_000
    assert index.training_size(237_000_000) * 768 * 4 <= 32 * 2**20
    roomy = create_index("ivfpq", 768, DatastoreConfig(build_memory_mb=16384))
    assert roomy.training_size(10_000_000) == 64 * int(4 * 10_000_000**0.5)


def test_two_level_kmeans_gives_exactly_nlist_unit_centroids(data, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kmeans, "TWO_LEVEL_ABOVE", 8)
    cents = kmeans.coarse_centroids(data[0][:3000], 45)
    assert cents.shape == (45, DIM)
    np.testing.assert_allclose(np.linalg.norm(cents, axis=1), 1.0, rtol=1e-4)
    sizes = np.array([500, 3, 0, 1200, 40])
    alloc = kmeans._split(sizes, 30)
    assert alloc.sum() == 30 and (alloc <= sizes).all() and alloc[2] == 0 and (alloc[sizes > 0] >= 1).all()


def test_compact_merges_segments_into_one(data, tmp_path: Path) -> None:
    base, queries = data
    index = trained(base)
    index.vectors = PartVectors([(0, base.astype(np.float16))])
    for lo in range(0, 6000, 2000):  # build + two `datastore add`s = three segments
        index.add(base[lo : lo + 2000], np.arange(lo, lo + 2000, dtype=np.int64))
        index.save(tmp_path)
    assert [s["name"] for s in read_meta(tmp_path)["segments"]] == ["seg-00000", "seg-00001", "seg-00002"]
    before = index.search(queries, 10)
    index.add(base[6000:], np.arange(6000, 8000, dtype=np.int64))  # unsaved adds are compacted too
    files = index.compact()
    assert [s["name"] for s in read_meta(tmp_path)["segments"]] == ["seg-00004"]  # the unsaved adds were seg-00003
    assert sorted(p.name for p in tmp_path.glob("seg-*")) == ["seg-00004.faiss", "seg-00004.ivfdata"]
    assert set(files) == {"index.json", "ivfpq.trained.faiss", "seg-00004.faiss", "seg-00004.ivfdata"}
    loaded = load_index(tmp_path, DIM, DatastoreConfig(ivfpq=CFG), vectors=index.vectors)
    assert loaded.ntotal == index.ntotal == 8000
    assert np.array_equal(loaded.search(queries, 10)[1], index.search(queries, 10)[1])
    assert recall_at_10(loaded.search(queries, 10)[1], base, queries) >= 0.95
    assert recall_at_10(before[1], base[:6000], queries) >= 0.95
    loaded.add(base[:10], np.arange(8000, 8010, dtype=np.int64))
    assert "seg-00005.ivfdata" in loaded.save(tmp_path)


def _list_ids(directory: Path) -> np.ndarray:
    """Every id the saved index's segments hold, read off their inverted lists."""
    from datastore.index.ivfpq import _entries, _lists, _open_ondisk

    out = []
    for seg in read_meta(directory)["segments"]:
        header = _open_ondisk(directory, seg["name"])
        il = _lists(header)
        out += [_entries(il, j)[0] for j in range(il.nlist)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def test_compact_with_a_drop_map_leaves_the_dropped_codes_out(data, tmp_path: Path) -> None:
    base, queries = data
    index = trained(base)
    index.vectors = PartVectors([(0, base.astype(np.float16))])
    for lo in (0, 4000):  # two segments
        index.add(base[lo : lo + 4000], np.arange(lo, lo + 4000, dtype=np.int64))
        index.save(tmp_path)
    drop = np.zeros(len(base), dtype=np.uint8)
    drop[np.random.default_rng(3).choice(len(base), 1500, replace=False)] = 1
    drop[:50] = 1
    before = index.search(queries, 10, exclude=drop)
    code_size = int(index._template().code_size)
    files = index.compact(drop=drop)
    assert [s["name"] for s in read_meta(tmp_path)["segments"]] == ["seg-00002"]
    held = _list_ids(tmp_path)
    assert index.ntotal == len(held) == len(base) - int(drop.sum())
    assert np.array_equal(np.sort(held), np.flatnonzero(drop == 0)), "exactly the live ids, once each"
    assert (tmp_path / "seg-00002.ivfdata").stat().st_size == index.ntotal * (code_size + 8)
    loaded = load_index(tmp_path, DIM, DatastoreConfig(ivfpq=CFG), vectors=index.vectors)
    for idx in (index, loaded):
        for exclude in (drop, None):  # the dropped codes are gone: excluding them is no longer needed
            s, i = idx.search(queries, 10, exclude=exclude)
            np.testing.assert_array_equal(i, before[1])
            np.testing.assert_array_equal(s, before[0])
    assert set(files) == {"index.json", "ivfpq.trained.faiss", "seg-00002.faiss", "seg-00002.ivfdata"}
    # one segment, nothing more to drop: already compact, nothing rewritten
    mtime = (tmp_path / "seg-00002.ivfdata").stat().st_mtime_ns
    loaded.compact(drop=drop)
    assert read_meta(tmp_path)["segments"][0]["name"] == "seg-00002"
    assert (tmp_path / "seg-00002.ivfdata").stat().st_mtime_ns == mtime
    # one segment with codes to drop is rewritten; adds after a compact get the next segment
    drop[np.flatnonzero(drop == 0)[:100]] = 1
    loaded.compact(drop=drop)
    assert [s["name"] for s in read_meta(tmp_path)["segments"]] == ["seg-00003"]
    assert loaded.ntotal == len(_list_ids(tmp_path)) == len(base) - int(drop.sum())
    loaded.add(base[:10], np.arange(8000, 8010, dtype=np.int64))
    assert "seg-00004.ivfdata" in loaded.save(tmp_path) and loaded.ntotal == len(base) - int(drop.sum()) + 10
    # everything dropped: an empty index that still loads and searches
    loaded.compact(drop=np.ones(8010, dtype=np.uint8))
    empty = load_index(tmp_path, DIM, DatastoreConfig(ivfpq=CFG), vectors=index.vectors)
    assert empty.ntotal == 0 and (empty.search(queries, 10)[1] == -1).all()


def test_auto_nprobe_grows_with_sqrt_nlist_and_explicit_settings_are_honoured(data) -> None:
    from datastore.index.ivfpq import plan_nprobe

    auto = IVFPQConfig()
    assert auto.nprobe == 0 and auto.rescore == 1000
    assert [plan_nprobe(nl, auto) for nl in (16, 263, 4000, 4096, 8962, 61579)] == [16, 64, 64, 64, 95, 249]
    assert plan_nprobe(61579, IVFPQConfig(nprobe=64)) == 64 and plan_nprobe(8, IVFPQConfig(nprobe=32)) == 32
    base, queries = data
    index = trained(base, IVFPQConfig(nlist=32, m=8, nbits=8, rescore=100))  # nprobe auto: all 32 lists
    index.add(base, np.arange(len(base), dtype=np.int64))
    index.vectors = PartVectors([(0, base.astype(np.float16))])
    quantizer = index._ready().quantizer
    home = quantizer.search(queries, 1)[1][:, 0]

    def foreign_hits() -> int:
        """Results of the top 400 outside each query's nearest list (~250 vectors per list)."""
        ids = index.search(queries, 400)[1]
        lists = quantizer.search(base[np.maximum(ids, 0).ravel()], 1)[1].reshape(ids.shape)
        return int(((lists != home[:, None]) & (ids >= 0)).sum())

    assert foreign_hits() > 0, "auto visits more than the nearest list"
    assert recall_at_10(index.search(queries, 10)[1], base, queries) >= 0.95
    index.config = IVFPQConfig(nlist=32, m=8, nbits=8, nprobe=1, rescore=100)
    assert foreign_hits() == 0, "an explicit nprobe 1 visits only the nearest list"
