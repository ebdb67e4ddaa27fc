"""The sparse (lexical) retriever protocol and what every backend shares: the index's freshness stamp.

A sparse index is derived from a datastore's live passages and uses the same integer passage ids as
the dense index, so dense and sparse rankings fuse without any id translation. It lives under
``<datastore>/sparse/<backend>/`` with a ``stamp.json`` naming the datastore state it was built
from; an index whose stamp no longer matches (papers added or deleted since) is rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from datastore.datastore import Datastore
from datastore.models import Passage
from retriever.protocols import Hit

STAMP = "stamp.json"
INDEX_FORMAT = 1


@runtime_checkable
class SparseRetriever(Protocol):
    """Lexical retrieval over a datastore's passages; ``Hit.scores`` gets the backend's ``stage`` key."""

    stage: str

    def search(self, query: str, k: int = 10) -> list[Hit]: ...

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]: ...


def index_text(passage: Passage) -> str:
    """What BM25 indexes for a passage: title + text (the BEIR convention for title + abstract)."""
    return f"{passage.title} {passage.text}".strip() if passage.title else passage.text


def index_dir(datastore_root: Path, backend: str) -> Path:
    return Path(datastore_root) / "sparse" / backend


def datastore_stamp(datastore: Datastore, backend: str, params: dict[str, Any]) -> dict[str, Any]:
    """What determines a sparse index: the datastore's build and passage set, the backend, its params."""
    m = datastore.manifest
    return {
        "format": INDEX_FORMAT,
        "backend": backend,
        "params": params,
        "build_id": m.build_id,
        "updated_at": m.updated_at,
        "passages": m.passages,
        "live_passages": len(datastore),
    }


def read_stamp(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_current(directory: Path, stamp: dict[str, Any]) -> bool:
    return read_stamp(directory) == stamp


@contextmanager
def atomic_dir(target: Path, stamp: dict[str, Any]) -> Iterator[Path]:
    """A scratch directory that replaces ``target`` (with ``stamp`` written) only if the body succeeds.

    Concurrent builders each write their own scratch dir; the last rename wins and both are complete.
    """
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
