"""Streaming index builds over a datastore's parts: sample once, train once, add in bounded batches.

``sources`` are ``(start, array)`` pairs: each part's first global id and its (n, dim) vectors,
usually an fp16 ``np.memmap`` of ``vectors.f16.npy``. Nothing here holds more than the training
sample and one batch (both sized from ``datastore.build_memory_mb``), whatever the corpus size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datastore.config import DatastoreConfig
from datastore.errors import DatastoreError
from datastore.index.base import VectorIndex
from datastore.index.choose import choose_kind
from datastore.index.registry import create_index

READ_ROWS = 1 << 16  # rows read per memmap slice while sampling


def sample_rows(arrays: Sequence[np.ndarray], n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` rows drawn uniformly without replacement across ``arrays`` (as if concatenated), float32.

    Reads the chosen rows part by part in ascending order, so memory is the sample plus one slice.
    """
    sizes = np.array([len(a) for a in arrays], dtype=np.int64)
    total = int(sizes.sum())
    if n > total:
        raise DatastoreError(f"asked for {n} sample rows of {total}", hint="sample at most the datastore's size")
    if not arrays:
        raise DatastoreError("no vectors to sample", hint="build at least one part first")
    dim = int(arrays[0].shape[1])
    picks = np.sort(np.random.default_rng(seed).choice(total, n, replace=False)) if n < total else np.arange(total)
    out = np.empty((n, dim), dtype=np.float32)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    done = 0
    for p, arr in enumerate(arrays):
        local = picks[(picks >= starts[p]) & (picks < ends[p])] - starts[p]
        for lo in range(0, len(local), READ_ROWS):
            rows = local[lo : lo + READ_ROWS]
            out[done : done + len(rows)] = arr[rows]
            done += len(rows)
    return out


def batch_rows(dim: int, config: DatastoreConfig) -> int:
    """Rows per ``add`` batch: an eighth of build_memory_mb as float32 (plus the fp16 slice it is read
    from), so batch + the in-RAM block of codes (at most half) stay under the budget."""
    return max(1024, (config.build_memory_mb * 2**20 // 8) // (4 * dim))


def add_sources(
    index: VectorIndex, sources: Sequence[tuple[int, np.ndarray]], config: DatastoreConfig, *, progress: bool = False
) -> int:
    """Add every source's rows under ids ``start + row``, in bounded batches; returns rows added."""
    total = sum(len(a) for _, a in sources)
    step = batch_rows(index.dim, config)
    done = 0
    with tqdm(total=total, desc="indexing", unit="vector", disable=not progress) as bar:
        for start, arr in sources:
            for lo in range(0, len(arr), step):
                x = np.asarray(arr[lo : lo + step], dtype=np.float32)
                index.add(x, np.arange(start + lo, start + lo + len(x), dtype=np.int64))
                done += len(x)
                bar.update(len(x))
    return done


def build_index(
    sources: Sequence[tuple[int, np.ndarray]],
    config: DatastoreConfig,
    *,
    kind: str | None = None,
    directory: Path | None = None,
    workdir: Path | None = None,
    progress: bool = False,
    seed: int = 0,
) -> VectorIndex:
    """One index over all ``sources``: choose the kind (unless given), train once, add all, save."""
    if not sources:
        raise DatastoreError("no vectors to index", hint="build at least one part first")
    dim = int(sources[0][1].shape[1])
    n_total = sum(len(a) for _, a in sources)
    kind = kind or choose_kind(n_total, dim, config)
    index = create_index(kind, dim, config, workdir=workdir)
    want = index.training_size(n_total)
    if want:
        sample = sample_rows([a for _, a in sources], want, seed=seed)
        index.train(sample, n_total=n_total)
        del sample
    add_sources(index, sources, config, progress=progress)
    if directory is not None:
        index.save(directory)
    return index
