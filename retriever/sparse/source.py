"""The read side of a datastore that sparse indexes use (the datastore v2 contract, in one place).

Sparse indexes read live passages by id range, the tombstoned ids and the next id to be assigned;
these helpers name exactly that, so the backends depend on these five calls and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from datastore.datastore import Datastore
from datastore.models import Passage


def next_id(datastore: Datastore) -> int:
    """One past the largest global passage id ever assigned (tombstoned ids included)."""
    return int(datastore.next_id)


def deleted_ids(datastore: Datastore) -> np.ndarray:
    """Sorted int64 global ids of the tombstoned passages (deleted, and duplicates)."""
    return np.asarray(datastore.deleted_ids(), dtype=np.int64)


def deleted_count(datastore: Datastore) -> int:
    """How many ids are tombstoned: O(1), from the manifest."""
    return int(datastore.manifest.passages) - len(datastore)


def iter_live(datastore: Datastore, start: int = 0, stop: int | None = None) -> Iterator[Passage]:
    """Live passages with ``start <= id < stop`` in id order, streamed."""
    return datastore.iter_passages(start, stop)


def identity(datastore: Datastore) -> dict[str, Any]:
    """What names this datastore (not its contents): a rebuilt datastore gets a new identity."""
    m = datastore.manifest
    return {"build_id": m.build_id, "created_at": m.created_at}
