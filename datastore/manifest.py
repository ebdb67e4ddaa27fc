"""The datastore manifest (format 2): what was built, from which parts, and how to check it is whole.

The manifest is written last and atomically; ``complete`` is true only when every part, the
global index and the tombstones it names are in place. It records every file with its size,
mtime and sha256 (`FileStamp`), so that opening a datastore trusts unchanged files by their stamp
and re-hashes only files whose stamp changed. It carries its own checksum (over its JSON without
that field), so bytes overwritten in the manifest itself are caught too.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from datastore.errors import (
    DatastoreCorrupted,
    DatastoreError,
    DatastoreIncomplete,
    DatastoreNotFound,
)

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
PARTS = "parts"
INDEX_DIR = "index"
TOMBSTONES = "tombstones.u8"
HASHES = "hashes.sqlite"


class EncoderInfo(BaseModel):
    """The passage encoder the vectors come from; queries must be encoded the same way."""

    id: str
    dim: int
    normalized: bool = True
    pooling: Literal["mean", "cls"] = "mean"
    metric: Literal["ip"] = "ip"
    max_tokens: int
    passage_prefix: str = ""


class FileStamp(BaseModel):
    """A file as written: its size and mtime (trusted while unchanged) and its sha256."""

    bytes: int
    mtime_ns: int
    sha256: str


class PartInfo(BaseModel):
    """One finished part: ``count`` passages under global ids ``start .. start + count - 1``."""

    name: str
    count: int
    start: int = Field(0, description="First global id; assigned by finalize (parts sorted by name).")
    dim: int = 0
    meta: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileStamp] = Field(default_factory=dict)


class SourceInfo(BaseModel):
    """What a build read from one source spec (summed over its parts)."""

    spec: str
    papers: int = 0
    malformed: int = 0
    malformed_lines: list[int] = Field(default_factory=list)


class IndexInfo(BaseModel):
    """The one vector index over all parts."""

    kind: str
    ntotal: int = Field(0, description="Codes the index holds: every passage until `datastore compact` drops tombstoned ones.")
    params: dict[str, Any] = Field(default_factory=dict)
    files: list[str] = Field(default_factory=list, description="Paths under index/ (stamped in Manifest.files).")


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    complete: bool = False
    encoder: EncoderInfo
    chunking: dict[str, Any] = Field(default_factory=dict)
    build_id: str
    created_at: str
    updated_at: str
    sources: list[str] = Field(default_factory=list, description="Source specs of the build (for resumption).")
    source_stats: list[SourceInfo] = Field(default_factory=list)
    parts: list[PartInfo] = Field(default_factory=list)
    index: IndexInfo | None = None
    files: dict[str, FileStamp] = Field(
        default_factory=dict, description="Files outside parts (index/*, tombstones, hash index), root-relative."
    )
    passages: int = Field(0, description="Rows over all parts (live + deleted + duplicates).")
    deleted: int = Field(0, description="Tombstoned rows: duplicates plus deleted passages.")
    duplicates: int = Field(0, description="Rows tombstoned because an earlier row has the same content hash.")
    papers_read: int = 0
    checksum: str = ""

    @property
    def live(self) -> int:
        return self.passages - self.deleted

    @property
    def deleted_passages(self) -> int:
        """Passages deleted by `datastore delete` (tombstones that are not duplicates)."""
        return self.deleted - self.duplicates

    @property
    def next_id(self) -> int:
        return max((p.start + p.count for p in self.parts), default=0)

    def all_files(self) -> dict[str, FileStamp]:
        """Every stamped file, root-relative: parts' files and the root files."""
        out = {f"{PARTS}/{p.name}/{n}": s for p in self.parts for n, s in p.files.items()}
        out.update(self.files)
        return out

    def compute_checksum(self) -> str:
        body = self.model_dump(mode="json", exclude={"checksum"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def save(self, directory: Path) -> None:
        self.updated_at = now()
        self.checksum = self.compute_checksum()
        atomic_write_text(directory / MANIFEST, self.model_dump_json(indent=1))


def read_manifest(root: Path, *, require_complete: bool = False) -> Manifest:
    """The manifest of ``root``, checked (format, checksum); DatastoreError subclasses name the fix."""
    path = root / MANIFEST
    if not root.exists():
        raise DatastoreNotFound(
            f"no datastore at {root}",
            hint="build one with `openscholar datastore build SOURCE... --out DIR` or set datastore.path "
            "(OPENSCHOLAR_DATASTORE__PATH)",
        )
    if not path.is_file():
        if (root / PARTS).is_dir():
            raise DatastoreIncomplete(
                f"the build of {root} did not finish (parts but no {MANIFEST})",
                hint=f"resume it by running the same `openscholar datastore build ... --out {root}` again",
            )
        raise DatastoreNotFound(
            f"{root} is not a datastore (no {MANIFEST})",
            hint="build one with `openscholar datastore build SOURCE... --out DIR`",
        )
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise DatastoreCorrupted(
            f"the manifest of {root} is unreadable ({exc})", hint=_manifest_hint(root)
        ) from exc
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        raise DatastoreError(
            f"{root} is a format {version} datastore; this release reads format {FORMAT_VERSION}",
            hint=f"rebuild it: delete {root} and run `openscholar datastore build SOURCE... --out {root}` "
            "(or `--default` for the default corpus)",
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise DatastoreCorrupted(
            f"the manifest of {root} is invalid ({str(exc).splitlines()[0]})", hint=_manifest_hint(root)
        ) from exc
    if manifest.checksum != manifest.compute_checksum():
        raise DatastoreCorrupted(
            f"the manifest of {root} ({path}) does not match its checksum (edited or overwritten)",
            hint=_manifest_hint(root),
        )
    if require_complete and not manifest.complete:
        raise DatastoreIncomplete(
            f"the build of {root} did not finish ({len(manifest.parts)} parts finalized)",
            hint=f"resume it by running the same `openscholar datastore build ... --out {root}` again",
        )
    return manifest


def _manifest_hint(root: Path) -> str:
    return (
        f"a manifest is never edited by hand: restore {root / MANIFEST} from a backup, or rerun "
        f"`openscholar datastore build ... --out {root}` (finished parts are reused)"
    )


def build_id(encoder_id: str, dim: int, chunking: dict[str, Any], prefix: str = "") -> str:
    """A hash of what determines the vectors: it names the build (STYLE: never search another's)."""
    blob = json.dumps({"encoder": encoder_id, "dim": dim, "chunking": chunking, "prefix": prefix}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def sha256_file(path: Path, progress: Any = None) -> str:
    """sha256 of a file, read in 4 MiB blocks; ``progress(n)`` is called with each block's size."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(4 << 20), b""):
            h.update(block)
            if progress is not None:
                progress(len(block))
    return h.hexdigest()


def stamp(path: Path) -> FileStamp:
    """Size, mtime and sha256 of ``path`` as it is now (call after the last write)."""
    st = path.stat()
    digest = sha256_file(path)
    st2 = path.stat()
    if (st2.st_size, st2.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise DatastoreError(f"{path} changed while it was being hashed", hint="retry when no other process writes it", retryable=True)
    return FileStamp(bytes=st.st_size, mtime_ns=st.st_mtime_ns, sha256=digest)
