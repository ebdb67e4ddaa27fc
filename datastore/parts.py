"""Parts: the unit of build work, written once under ``parts/<name>.partial-*`` then renamed into place.

A part holds ``passages.sqlite`` (local ids 0..n-1), ``vectors.f16.npy`` ((n, dim) float16, row i =
local id i) and ``part.json`` (its `PartInfo`, with each file's stamp). Rows stream in: the
vectors file gets a fixed-size .npy header rewritten with the final shape at close, so a part as
large as a release shard never has to fit in RAM. A finished part is never modified; a directory
whose name holds ``.partial`` is an unfinished part and is never read.
"""

from __future__ import annotations

import ast
import os
import shutil
import struct
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from datastore.errors import DatastoreCorrupted, DatastoreError
from datastore.manifest import PARTS, PartInfo, atomic_write_text, stamp
from datastore.models import Passage
from datastore.passage_store import FILE as PASSAGES
from datastore.passage_store import PassageStore

VECTORS = "vectors.f16.npy"
PART_JSON = "part.json"
PARTIAL = ".partial"
_NPY_HEADER = 128  # bytes reserved for the .npy header (magic + length + dict, space padded)


def part_name(i: int) -> str:
    """The name of the i-th part: parts sort by name, and global ids follow that order."""
    return f"part-{i:05d}"


def parts_dir(root: Path) -> Path:
    return Path(root) / PARTS


def finished_parts(root: Path) -> list[PartInfo]:
    """Finished parts of ``root`` (those with a part.json, never ``*.partial*``), sorted by name."""
    base = parts_dir(root)
    if not base.is_dir():
        return []
    out = []
    for d in sorted(base.iterdir()):
        if PARTIAL in d.name or not (d / PART_JSON).is_file():
            continue
        info = read_part_info(d)
        if info.name != d.name:
            raise DatastoreCorrupted(
                f"{d / PART_JSON} names part {info.name!r}, not {d.name!r} (a part copied or renamed by hand)",
                hint=f"delete {d} and rebuild it; parts are never renamed",
            )
        out.append(info)
    return out


def read_part_info(directory: Path) -> PartInfo:
    try:
        return PartInfo.model_validate_json((directory / PART_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatastoreCorrupted(
            f"{directory / PART_JSON} is unreadable ({str(exc).splitlines()[0]})",
            hint=f"delete {directory} and rerun the build that wrote it (the part is rebuilt)",
        ) from exc


def remove_partials(root: Path, name: str | None = None) -> int:
    """Delete unfinished part directories (all, or those of part ``name``); returns how many."""
    base = parts_dir(root)
    if not base.is_dir():
        return 0
    n = 0
    for d in base.iterdir():
        if PARTIAL in d.name and (name is None or d.name.startswith(name + PARTIAL)):
            shutil.rmtree(d, ignore_errors=True)
            n += 1
    return n


def _npy_header(n: int, dim: int) -> bytes:
    body = repr({"descr": "<f2", "fortran_order": False, "shape": (n, dim)}).encode("latin1")
    size = _NPY_HEADER - 10
    if len(body) + 1 > size:
        raise DatastoreError(f"cannot write a .npy header for shape ({n}, {dim})", hint="report this as a bug")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", size) + body.ljust(size - 1) + b"\n"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PartWriter:
    """Writes one part: ``with PartWriter(root, name, dim) as w: w.write(passages, vectors)``.

    ``close()`` (or leaving the block without an error) stamps the files and renames the part
    into place; an error removes the unfinished directory. If another writer finished the same
    part first, its part is kept and returned.
    """

    def __init__(self, root: Path, name: str, dim: int, *, meta: dict[str, Any] | None = None, compress: bool = True) -> None:
        if PARTIAL in name or "/" in name:
            raise DatastoreError(f"invalid part name {name!r}", hint="use part_name(i)")
        self.root = Path(root)
        self.name = name
        self.dim = dim
        self.meta = dict(meta or {})
        self.final = parts_dir(root) / name
        self.tmp = parts_dir(root) / f"{name}{PARTIAL}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir(parents=True)
        self.store = PassageStore(self.tmp / PASSAGES, readonly=False, compress=compress)
        self._vec = (self.tmp / VECTORS).open("wb")
        self._vec.write(_npy_header(0, dim))
        self.count = 0
        self.closed = False

    def write(self, passages: Sequence[Passage], vectors: np.ndarray) -> None:
        """Append rows (local ids continue from the last write); ``passages[i]`` goes with ``vectors[i]``."""
        vec = np.asarray(vectors)
        if vec.ndim != 2 or vec.shape[1] != self.dim or len(vec) != len(passages):
            raise DatastoreError(
                f"part {self.name}: {len(passages)} passages with vectors of shape {vec.shape}, expected "
                f"({len(passages)}, {self.dim})",
                hint="pass one vector of the encoder's dimension per passage",
            )
        self.store.write(self.count, passages)
        self._vec.write(np.ascontiguousarray(vec, dtype="<f2").tobytes())
        self.count += len(passages)

    def close(self) -> PartInfo:
        """Finish the files, stamp them, rename the part into place; returns its info."""
        if self.closed:
            raise DatastoreError(f"part {self.name} is already closed", hint="write each part once")
        self.closed = True
        self._vec.seek(0)
        self._vec.write(_npy_header(self.count, self.dim))
        self._vec.flush()
        os.fsync(self._vec.fileno())
        self._vec.close()
        self.store.finish()
        with (self.tmp / PASSAGES).open("rb+") as fh:
            os.fsync(fh.fileno())
        files = {n: stamp(self.tmp / n) for n in (PASSAGES, VECTORS)}
        info = PartInfo(name=self.name, count=self.count, dim=self.dim, meta=self.meta, files=files)
        atomic_write_text(self.tmp / PART_JSON, info.model_dump_json(indent=1))
        _fsync_dir(self.tmp)
        try:
            os.rename(self.tmp, self.final)
        except OSError:
            if (self.final / PART_JSON).is_file():  # another writer finished this part first: keep theirs
                shutil.rmtree(self.tmp, ignore_errors=True)
                return read_part_info(self.final)
            raise
        _fsync_dir(self.final.parent)
        return info

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self._vec.close()
            self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        elif not self.closed:
            self.info = self.close()


def read_npy_shape(path: Path) -> tuple[int, ...]:
    """The shape in a .npy header, read without mapping the file."""
    with path.open("rb") as fh:
        head = fh.read(_NPY_HEADER)
    try:
        size = struct.unpack("<H", head[8:10])[0]
        return tuple(ast.literal_eval(head[10 : 10 + size].decode("latin1"))["shape"])
    except (struct.error, ValueError, SyntaxError, KeyError) as exc:
        raise DatastoreCorrupted(f"{path} has no valid .npy header", hint="rebuild the part") from exc
