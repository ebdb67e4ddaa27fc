"""The read side of a datastore that sparse indexes need, in the names of the v2 contract.

Datastore v2 (docs: notes/datastore-v2.md) gives ``iter_passages(start, stop)``, ``deleted_ids()``
and ``next_id``; the v1 `Datastore` has ``iter_passages()`` over everything and a private list of
deleted ids. These helpers use the v2 names when the datastore has them and fall back to v1, so the
sparse backends code against one interface and keep working across the merge.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import numpy as np

from datastore.datastore import Datastore
from datastore.models import Passage


def next_id(datastore: Datastore) -> int:
    """One past the largest global passage id ever assigned (deleted ids included)."""
    value = getattr(datastore, "next_id", None)
    return int(value) if value is not None else int(datastore.manifest.passages)


def deleted_ids(datastore: Datastore) -> np.ndarray:
    """Sorted int64 global ids of the deleted (tombstoned) passages."""
    fn = getattr(datastore, "deleted_ids", None)
    ids = fn() if callable(fn) else getattr(datastore, "_deleted", np.zeros(0, dtype=np.int64))
    return np.unique(np.asarray(ids, dtype=np.int64))


def deleted_count(datastore: Datastore) -> int:
    """How many ids are tombstoned (deleted, and in v2 duplicates): O(1), from the manifest."""
    return int(datastore.manifest.passages) - len(datastore)


def iter_live(datastore: Datastore, start: int = 0, stop: int | None = None) -> Iterator[Passage]:
    """Live passages with ``start <= id < stop`` in id order, streamed."""
    it: Any = datastore.iter_passages
    if _takes_range(it):
        yield from it(start, stop)
        return
    for p in it():
        if p.passage_id < start:
            continue
        if stop is not None and p.passage_id >= stop:
            break
        yield p


def identity(datastore: Datastore) -> dict[str, Any]:
    """What names this datastore (not its contents): a rebuilt datastore gets a new identity."""
    m = datastore.manifest
    return {"build_id": m.build_id, "created_at": getattr(m, "created_at", None)}


def _takes_range(fn: Any) -> bool:
    try:
        return len(inspect.signature(fn).parameters) >= 2
    except (TypeError, ValueError):
        return False
