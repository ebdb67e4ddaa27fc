"""One writer per datastore directory: an advisory lock on ``root/.lock`` (readers never take it)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datastore.errors import DatastoreError

LOCK = ".lock"


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the write lock of ``root`` (created if needed); fails at once if another process holds it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK).open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatastoreError(
                f"another process is writing {root}", hint="wait for it to finish", retryable=True
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
