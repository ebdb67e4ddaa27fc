"""A datastore directory opened for search: verified on open, fans out over shards, merges exactly."""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from datastore.config import DatastoreConfig
from datastore.errors import (
    DatastoreCorrupted,
    DatastoreIncomplete,
    DatastoreNotFound,
    EncoderMismatch,
)
from datastore.manifest import FORMAT_VERSION, MANIFEST, Manifest
from datastore.models import Passage
from datastore.shard import Shard

DELETED = "deleted.json"


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    if not root.exists():
        raise DatastoreNotFound(
            f"no datastore at {root}",
            hint="build one with `openscholar datastore build SOURCE... --out DIR` or set datastore.path "
            "(OPENSCHOLAR_DATASTORE__PATH)",
        )
    if not path.is_file():
        raise DatastoreNotFound(
            f"{root} is not a datastore (no {MANIFEST})",
            hint="build one with `openscholar datastore build SOURCE... --out DIR`",
        )
    try:
        return Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, ValueError) as exc:
        raise DatastoreCorrupted(
            f"the manifest of {root} is unreadable ({str(exc).splitlines()[0]})",
            hint="rebuild the datastore; a manifest is never edited by hand",
        ) from exc


def read_deleted(root: Path) -> dict[str, list[int]]:
    path = root / DELETED
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatastoreCorrupted(f"{path} is unreadable", hint="restore it or rerun the delete") from exc
    return {str(k): [int(i) for i in v] for k, v in data.get("papers", {}).items()}


class Datastore:
    """Read side of a datastore. Thread-safe for search and passage lookup."""

    def __init__(self, root: Path, manifest: Manifest, shards: list[Shard], deleted: dict[str, list[int]]) -> None:
        self.root = root
        self.manifest = manifest
        self.shards = shards
        self._starts = [s.start for s in shards]
        self.deleted_papers = set(deleted)
        self._deleted = np.array(sorted({i for ids in deleted.values() for i in ids}), dtype=np.int64)

    @classmethod
    def open(
        cls,
        root: str | Path,
        *,
        encoder_id: str | None = None,
        dim: int | None = None,
        config: DatastoreConfig | None = None,
        verify: str | None = None,
    ) -> Datastore:
        """Open and verify ``root``; ``encoder_id``/``dim`` are the query encoder's, checked against the build."""
        root = Path(root).expanduser()
        config = config or DatastoreConfig()
        manifest = read_manifest(root)
        if manifest.format_version != FORMAT_VERSION:
            raise DatastoreCorrupted(
                f"{root} has format version {manifest.format_version}, this release reads {FORMAT_VERSION}",
                hint="rebuild the datastore with this release",
            )
        if not manifest.complete:
            raise DatastoreIncomplete(
                f"the build of {root} did not finish ({len(manifest.shards)} shards done)",
                hint=f"resume it by running the same `openscholar datastore build ... --out {root}` again",
            )
        enc = manifest.encoder
        if (encoder_id is not None and encoder_id != enc.id) or (dim is not None and dim != enc.dim):
            raise EncoderMismatch(
                f"datastore at {root} was built with encoder {enc.id} (dim {enc.dim}) but the query encoder "
                f"is {encoder_id} (dim {dim})",
                hint="rebuild the datastore with this encoder or set embedder.model to the one it was built with",
            )
        # Shards of an unfinished `datastore add` are not served until that add is rerun to the end.
        shards = [
            Shard(root, info, enc.dim, config, verify or config.verify)
            for info in manifest.shards
            if manifest.batches[info.batch].complete
        ]
        if [s.start for s in shards] != sorted(s.start for s in shards):
            raise DatastoreCorrupted(f"shards of {root} are out of order", hint="rebuild the datastore")
        return cls(root, manifest, shards, read_deleted(root))

    # -- facts ----------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.manifest.encoder.dim

    @property
    def encoder_id(self) -> str:
        return self.manifest.encoder.id

    def __len__(self) -> int:
        """Live passages (deleted ones excluded)."""
        return self.manifest.passages - len(self._deleted)

    def memory_bytes(self) -> int:
        return sum(s.memory_bytes() for s in self.shards)

    def is_deleted(self, ids: np.ndarray) -> np.ndarray:
        return np.isin(ids, self._deleted) if len(self._deleted) else np.zeros(np.shape(ids), dtype=bool)

    # -- search ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over all shards: (scores, global ids), (nq, k), best first, padded with -inf / -1.

        Each shard returns its own top ``k + deleted`` so that the merge is exact after tombstones
        are dropped.
        """
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        per_shard = k + len(self._deleted)
        parts = [s.search(q, per_shard) for s in self.shards if s.count]
        out_s = np.full((len(q), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(q), k), -1, dtype=np.int64)
        if not parts or k <= 0:
            return out_s, out_i
        scores = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        scores[(ids < 0) | self.is_deleted(ids)] = -np.inf
        for row in range(len(q)):
            order = np.argsort(-scores[row], kind="stable")[:k]
            keep = order[np.isfinite(scores[row][order])]
            out_s[row, : len(keep)] = scores[row][keep]
            out_i[row, : len(keep)] = ids[row][keep]
        return out_s, out_i

    # -- passages -------------------------------------------------------------------------------
    def _shard_of(self, pid: int) -> Shard | None:
        i = bisect.bisect_right(self._starts, pid) - 1
        if i < 0:
            return None
        shard = self.shards[i]
        return shard if pid < shard.start + shard.count else None

    def get(self, ids: Sequence[int]) -> list[Passage]:
        """Passages for ``ids`` in that order; unknown or deleted ids are left out."""
        by_shard: dict[int, list[int]] = {}
        for pid in ids:
            shard = self._shard_of(int(pid))
            if shard is not None:
                by_shard.setdefault(shard.start, []).append(int(pid))
        found: dict[int, Passage] = {}
        for start, pids in by_shard.items():
            found.update(self.shards[self._starts.index(start)].store.get(pids))
        dead = set(self._deleted.tolist())
        return [found[int(i)] for i in ids if int(i) in found and int(i) not in dead]

    def passage_ids_of_papers(self, paper_ids: Sequence[str]) -> list[int]:
        return [pid for s in self.shards for pid in s.store.ids_of_papers(list(paper_ids))]

    def iter_passages(self) -> Iterator[Passage]:
        """Every live passage in id order (for building sparse indexes), streamed."""
        dead = set(self._deleted.tolist())
        for shard in self.shards:
            for p in shard.store.iter_passages():
                if p.passage_id not in dead:
                    yield p

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored passage vectors (float32) for ``ids``."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for row, pid in enumerate(ids):
            shard = self._shard_of(int(pid))
            if shard is not None:
                out[row] = shard.vectors[int(pid) - shard.start]
        return out

    def close(self) -> None:
        for s in self.shards:
            s.close()
