"""The sparse (lexical) retriever protocol and what every backend shares: changes, stamps, locks.

A sparse index is derived from a datastore's live passages and uses the same integer passage ids as
the dense index, so dense and sparse rankings fuse without any id translation. It lives under
``<datastore>/sparse/<backend>/`` with a ``stamp.json`` naming the datastore state it reflects:
which datastore (identity), up to which global id it has indexed (``indexed_to``) and how many
tombstones it has seen. An index behind its datastore is brought up to date by the change alone
(`Change`: the ids added since, the ids deleted since) when it is refreshed or opened, never
served stale; a different datastore or different BM25 parameters mean a rebuild.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from datastore.datastore import Datastore
from datastore.models import Passage
from retriever.protocols import Hit, Scored
from retriever.sparse import source

STAMP = "stamp.json"
INDEX_FORMAT = 2
SyncOutcome = Literal["current", "updated", "rebuilt"]


@runtime_checkable
class SparseRetriever(Protocol):
    """Lexical retrieval over a datastore's passages; ``Hit.scores`` gets the backend's ``stage`` key."""

    stage: str

    def search(self, query: str, k: int = 10) -> list[Hit]: ...

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]: ...

    def search_ids_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Scored]]:
        """`search_batch` without reading the passages (the pipeline reads only those it returns)."""
        ...


@dataclass(frozen=True)
class Change:
    """What one datastore operation changed: a range of new global ids and the ids it deleted.

    ``added=(start, stop)`` means ids ``start <= id < stop`` were appended (a build or an add);
    ``deleted`` are the global ids tombstoned. The CLI passes it to
    `openscholar.indexing.refresh_derived_indexes` after build / add / delete.
    """

    added: tuple[int, int] | None = None
    deleted: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.added is not None and not (0 <= self.added[0] <= self.added[1]):
            raise ValueError(f"Change.added must be (start, stop) with 0 <= start <= stop, got {self.added}")

    @property
    def empty(self) -> bool:
        return (self.added is None or self.added[0] == self.added[1]) and not self.deleted


def index_text(passage: Passage) -> str:
    """What BM25 indexes for a passage: title + text (the BEIR convention for title + abstract)."""
    return f"{passage.title} {passage.text}".strip() if passage.title else passage.text


def index_dir(datastore_root: Path, backend: str) -> Path:
    return Path(datastore_root) / "sparse" / backend


def new_stamp(datastore: Datastore, backend: str, params: dict[str, Any]) -> dict[str, Any]:
    """The stamp of an index of ``backend`` that reflects ``datastore`` as it is now."""
    return {
        "format": INDEX_FORMAT,
        "backend": backend,
        "params": params,
        "datastore": source.identity(datastore),
        "indexed_to": source.next_id(datastore),
        "deleted": source.deleted_count(datastore),
        "live_passages": len(datastore),
    }


def same_index(stamp: dict[str, Any] | None, datastore: Datastore, backend: str, params: dict[str, Any]) -> bool:
    """Whether ``stamp`` is of this backend, parameters and datastore, so a change can be applied to it."""
    return (
        stamp is not None
        and stamp.get("format") == INDEX_FORMAT
        and stamp.get("backend") == backend
        and stamp.get("params") == params
        and stamp.get("datastore") == source.identity(datastore)
        and int(stamp.get("indexed_to", -1)) <= source.next_id(datastore)
        and int(stamp.get("deleted", -1)) <= source.deleted_count(datastore)
    )


def is_current(stamp: dict[str, Any] | None, datastore: Datastore, backend: str, params: dict[str, Any]) -> bool:
    """Whether the index reflects the datastore's present state (nothing added or deleted since)."""
    return (
        same_index(stamp, datastore, backend, params)
        and stamp is not None
        and int(stamp["indexed_to"]) == source.next_id(datastore)
        and int(stamp["deleted"]) == source.deleted_count(datastore)
    )


def read_stamp(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_stamp(directory: Path, stamp: dict[str, Any]) -> None:
    """Replace the stamp atomically: a crash leaves the old or the new one, never half of one."""
    tmp = directory / f".{STAMP}.{os.getpid()}"
    tmp.write_text(json.dumps(stamp, indent=2), encoding="utf-8")
    os.replace(tmp, directory / STAMP)


@contextmanager
def index_lock(directory: Path) -> Iterator[None]:
    """An exclusive lock on updating the index in ``directory`` (processes that open a stale index race)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with (directory.parent / f".{directory.name}.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def atomic_dir(target: Path, stamp: dict[str, Any]) -> Iterator[Path]:
    """A scratch directory that replaces ``target`` (with ``stamp`` written) only if the body succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2), encoding="utf-8")
        old = target.with_name(f".{target.name}-old-{os.getpid()}")
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stale_error(datastore: Datastore, backend: str) -> Exception:
    from retriever.errors import RetrieverError

    return RetrieverError(
        f"the {backend} index of {datastore.root} is missing or behind its passages",
        hint="run `openscholar datastore build` (or add/delete) again, or open it with build allowed to update it",
    )
