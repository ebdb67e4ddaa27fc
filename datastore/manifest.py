"""The datastore manifest: what was built, with what encoder, and how to check it is whole."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class EncoderInfo(BaseModel):
    id: str
    dim: int
    normalized: bool = True
    max_tokens: int
    passage_prefix: str = ""


class FileInfo(BaseModel):
    bytes: int
    sha256: str


class ShardInfo(BaseModel):
    name: str
    start: int = Field(description="First global passage id of the shard; ids are contiguous.")
    count: int
    index: str
    batch: int = Field(description="Which build batch (build = 0, each add +1) wrote the shard.")
    papers_end: int = Field(description="Papers of the batch's sources consumed once this shard was cut.")
    files: dict[str, FileInfo]


class SourceInfo(BaseModel):
    spec: str
    papers: int = 0
    malformed: int = 0
    malformed_lines: list[int] = Field(default_factory=list)


class BatchInfo(BaseModel):
    sources: list[str]
    complete: bool = False
    papers_read: int = 0
    duplicates: int = 0
    source_stats: list[SourceInfo] = Field(default_factory=list)
    started_at: str
    finished_at: str | None = None


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    complete: bool = False
    encoder: EncoderInfo
    chunking: dict[str, Any]
    index: dict[str, Any]
    shard_size: int
    build_id: str
    created_at: str
    updated_at: str
    batches: list[BatchInfo] = Field(default_factory=list)
    shards: list[ShardInfo] = Field(default_factory=list)
    deleted_passages: int = 0

    @property
    def passages(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def next_id(self) -> int:
        return max((s.start + s.count for s in self.shards), default=0)

    def save(self, directory: Path) -> None:
        self.updated_at = now()
        atomic_write_text(directory / MANIFEST, self.model_dump_json(indent=2))


def build_id(encoder_id: str, dim: int, chunking: dict[str, Any], index: dict[str, Any], prefix: str = "") -> str:
    """A hash of what determines the vectors: it names the build (STYLE: never search another's)."""
    blob = json.dumps({"encoder": encoder_id, "dim": dim, "chunking": chunking, "index": index, "prefix": prefix}, sort_keys=True)
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


def file_info(path: Path) -> FileInfo:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return FileInfo(bytes=path.stat().st_size, sha256=h.hexdigest())
