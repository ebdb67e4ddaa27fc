"""Crash safety of `add`, `delete` and `compact`: an intent record written before files change, undone or redone.

`add` and `delete` change files in place (the tombstone map, the hash index) and swap the index
directory before the manifest, written last, commits the change; `compact` only swaps the index
directory. ``root/.pending.json`` records the operation first; if the process dies before the
commit, the next writer (under the lock) puts the datastore back as the manifest describes it
(`add`: truncate the tombstones, drop the new hashes, restore ``index.old/``; `compact`: restore
``index.old/``) or finishes it (`delete`: set the recorded ids again, re-stamp). Without a record a
stamp mismatch stays what it is: corruption. Readers that meet a record while a file does not match
get a retryable error instead.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from datastore.manifest import HASHES, INDEX_DIR, TOMBSTONES, Manifest, atomic_write_text, stamp

JOURNAL = ".pending.json"
INDEX_OLD = INDEX_DIR + ".old"


def begin(root: Path, manifest: Manifest, op: str, **data: Any) -> None:
    """Record that ``op`` is about to change ``root`` (described by ``manifest``)."""
    atomic_write_text(Path(root) / JOURNAL, json.dumps({"op": op, "manifest": manifest.checksum, **data}))


def end(root: Path) -> None:
    """The manifest committed the change: drop the record and the previous index directory."""
    shutil.rmtree(Path(root) / INDEX_OLD, ignore_errors=True)
    (Path(root) / JOURNAL).unlink(missing_ok=True)


def pending(root: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((Path(root) / JOURNAL).read_text())
        return data
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"op": "unknown"}


def recover(root: Path, manifest: Manifest) -> Manifest:
    """Undo an interrupted `add` or finish an interrupted `delete`; returns the (maybe updated) manifest.

    Call with the write lock held, before checking stamps.
    """
    root = Path(root)
    record = pending(root)
    if record is None:
        return manifest
    if record.get("manifest") != manifest.checksum:  # the manifest was written: the change is committed
        end(root)
        return manifest
    if record.get("op") == "add":
        n = manifest.passages
        with (root / TOMBSTONES).open("r+b") as fh:
            fh.truncate(n)
        old = root / INDEX_OLD
        if old.is_dir():
            shutil.rmtree(root / INDEX_DIR, ignore_errors=True)
            old.rename(root / INDEX_DIR)
        shutil.rmtree(root / (INDEX_DIR + ".tmp"), ignore_errors=True)
        if (root / HASHES).is_file():
            conn = sqlite3.connect(root / HASHES)
            conn.execute("DELETE FROM h WHERE id >= ?", (n,))
            conn.commit()
            conn.close()
        end(root)
        return manifest
    if record.get("op") == "compact":  # nothing but the index changed: the previous one comes back
        old = root / INDEX_OLD
        if old.is_dir():
            shutil.rmtree(root / INDEX_DIR, ignore_errors=True)
            old.rename(root / INDEX_DIR)
        shutil.rmtree(root / (INDEX_DIR + ".tmp"), ignore_errors=True)
        end(root)
        return manifest
    if record.get("op") == "delete":
        ids = np.asarray(record.get("ids", []), dtype=np.int64)
        if len(ids):
            tomb = np.memmap(root / TOMBSTONES, dtype=np.uint8, mode="r+", shape=(manifest.passages,))
            tomb[ids] = 1
            tomb.flush()
            del tomb
        manifest.files[TOMBSTONES] = stamp(root / TOMBSTONES)
        manifest.deleted += len(ids)
        manifest.save(root)
        end(root)
        return manifest
    return manifest
