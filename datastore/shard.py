"""One shard on disk: passages (SQLite), vectors (fp16 .npy, memory-mapped) and a FAISS index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datastore.config import DatastoreConfig
from datastore.errors import DatastoreCorrupted
from datastore.index.base import VectorIndex, index_class
from datastore.manifest import ShardInfo, file_info
from datastore.passage_store import PassageStore

VECTORS = "vectors.f16.npy"


def rebuild_hint(root: Path) -> str:
    return (
        f"rebuild it: `openscholar datastore build SOURCE... --out {root}` (finished shards are kept "
        "only when intact), or restore the directory from a backup"
    )


class Shard:
    """A loaded shard. Global ids are ``start + local id``."""

    def __init__(self, root: Path, info: ShardInfo, dim: int, config: DatastoreConfig, verify: str = "fast") -> None:
        self.root = root
        self.info = info
        self.dir = root / info.name
        self.start = info.start
        self.count = info.count
        self._verify_files(verify)
        try:
            self.vectors = np.load(self.dir / VECTORS, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise DatastoreCorrupted(
                f"shard {info.name} of {root}: vectors file is unreadable ({exc})", hint=rebuild_hint(root)
            ) from exc
        cls: Any = index_class(info.index)
        extra = {"ivfpq": config.ivfpq, "hnsw": config.hnsw}.get(info.index)
        try:
            self.index: VectorIndex = cls.load(self.dir, dim, vectors=self.vectors, config=extra)
        except RuntimeError as exc:  # FAISS read errors
            raise DatastoreCorrupted(
                f"shard {info.name} of {root}: index file is unreadable ({exc})", hint=rebuild_hint(root)
            ) from exc
        self.store = PassageStore(self.dir / PassageStore.FILE, readonly=True)
        self._verify_counts(dim)

    def _verify_files(self, verify: str) -> None:
        if not self.dir.is_dir():
            raise DatastoreCorrupted(f"shard {self.info.name} of {self.root} is missing", hint=rebuild_hint(self.root))
        for name, expected in self.info.files.items():
            path = self.dir / name
            if not path.is_file():
                raise DatastoreCorrupted(
                    f"shard {self.info.name} of {self.root}: file {name} is missing", hint=rebuild_hint(self.root)
                )
            size = path.stat().st_size
            if size != expected.bytes:
                raise DatastoreCorrupted(
                    f"shard {self.info.name} of {self.root}: {name} is {size} bytes, the manifest says "
                    f"{expected.bytes} (truncated or replaced)",
                    hint=rebuild_hint(self.root),
                )
            if verify == "full" and file_info(path).sha256 != expected.sha256:
                raise DatastoreCorrupted(
                    f"shard {self.info.name} of {self.root}: {name} does not match its checksum",
                    hint=rebuild_hint(self.root),
                )

    def _verify_counts(self, dim: int) -> None:
        n_passages = self.store.count()
        n_vectors = int(self.vectors.shape[0])
        n_index = self.index.ntotal
        if not (n_passages == n_vectors == n_index == self.count):
            raise DatastoreCorrupted(
                f"shard {self.info.name} of {self.root}: {n_passages} passages but {n_vectors} vectors and "
                f"{n_index} indexed (manifest: {self.count}); passages and vectors must correspond one to one",
                hint=rebuild_hint(self.root),
            )
        if self.vectors.ndim != 2 or self.vectors.shape[1] != dim:
            raise DatastoreCorrupted(
                f"shard {self.info.name} of {self.root}: vectors have shape {self.vectors.shape}, expected (n, {dim})",
                hint=rebuild_hint(self.root),
            )
        span = self.store.id_range()
        if self.count and span != (self.start, self.start + self.count - 1):
            raise DatastoreCorrupted(
                f"shard {self.info.name} of {self.root}: passage ids {span} do not match the manifest's "
                f"range starting at {self.start}",
                hint=rebuild_hint(self.root),
            )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.index.search(queries, min(k, self.count))
        ids = np.where(ids >= 0, ids + self.start, -1)
        return scores, ids

    def memory_bytes(self) -> int:
        return self.index.memory_bytes()

    def close(self) -> None:
        self.store.close()
