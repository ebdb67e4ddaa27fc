"""The reference's released datastore (OpenScholar-DataStore-V3) as read-only shards.

Layout (as the reference's code writes it, retriever/src/data.py and retriever/src/embed.py):

- ``passages/raw_passages-{s}-of-{n}.jsonl``: one passage a line, ``{"text", "id", "shard_id",
  "num_shards"}`` (``id`` 0-based within the shard; some copies also carry ``origin_id``);
- ``embeddings/.../passages_{s:02d}.pkl``: ``pickle.dump((ids, array))``, ids a list of ints, array
  float16 (n, 768) from the contriever-based encoder (mean pooling, not normalized).

Pickles are never unpickled (datastore/pickle_scan.py reads their opcodes and maps the array in
place), and are read only with ``trust_pickles``. The safe form needs no trust:
``passages_{s:02d}.npy`` (the (n, d) array) plus ``passages_{s:02d}_ids.npy`` (int ids), both
memory-mapped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from datastore.errors import SourceError
from datastore.jsonl import JSONDecodeError, loads
from datastore.manifest import EncoderInfo
from datastore.pickle_scan import scan_embedding_pickle

VectorsFormat = Literal["pickle", "npy"]

RAW_PASSAGES = re.compile(r"^raw_passages-(\d+)-of-(\d+)\.jsonl$")
REFERENCE_DIM = 768


def reference_encoder() -> EncoderInfo:
    """The encoder of the release: contriever-based, 768-d, mean pooling, unnormalized, inner product.

    Passages were embedded without a title, truncated at 256 tokens (254 of content); the reference
    encodes queries with the same model and pooling, without normalization.
    """
    return EncoderInfo(
        id="OpenScholar/OpenScholar_Retriever", dim=REFERENCE_DIM, normalized=False, pooling="mean", metric="ip",
        max_tokens=254, passage_prefix="",
    )


class UntrustedPickle(SourceError):
    """A pickle was offered without the user's say-so that they trust it."""


@dataclass(frozen=True)
class ReleaseShard:
    """One shard of the release: its passages file and its vectors file(s)."""

    index: int
    num_shards: int
    passages: Path
    vectors: Path
    ids: Path | None  # the ids .npy of the npy form; None for a pickle
    format: VectorsFormat


@dataclass(frozen=True)
class ShardVectors:
    """A shard's vectors, memory-mapped (n, d), and their ids (int64, n)."""

    ids: np.ndarray
    vectors: np.ndarray
    source: str


def _vector_files(src: Path, fmt: VectorsFormat) -> dict[int, tuple[Path, Path | None]]:
    pattern = re.compile(r"^passages_(\d+)\.pkl$" if fmt == "pickle" else r"^passages_(\d+)\.npy$")
    found: dict[int, tuple[Path, Path | None]] = {}
    for path in sorted(src.rglob("passages_*")):
        m = pattern.match(path.name)
        if not m or not path.is_file():
            continue
        s = int(m.group(1))
        if s in found:
            raise SourceError(
                f"two vector files for shard {s}: {found[s][0]} and {path}",
                hint="point SRC at one copy of the release",
            )
        ids = path.with_name(f"passages_{m.group(1)}_ids.npy") if fmt == "npy" else None
        if ids is not None and not ids.is_file():
            raise SourceError(f"{path} has no ids file {ids.name} beside it", hint="write the ids as int64 .npy next to it")
        found[s] = (path, ids)
    return found


def discover_release(src: str | Path, fmt: VectorsFormat = "pickle", shards: Sequence[int] | None = None) -> list[ReleaseShard]:
    """The shards of the release under ``src`` (all, or those in ``shards``), checked complete."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise SourceError(f"no release directory at {src}", hint="download OpenScholar-DataStore-V3 and pass its directory")
    passages: dict[int, tuple[int, Path]] = {}
    for path in sorted(src.rglob("raw_passages-*-of-*.jsonl")):
        m = RAW_PASSAGES.match(path.name)
        if not m:
            continue
        s, n = int(m.group(1)), int(m.group(2))
        if s in passages:
            raise SourceError(f"two passage files for shard {s}: {passages[s][1]} and {path}", hint="point SRC at one copy")
        passages[s] = (n, path)
    if not passages:
        pkls = list(src.rglob("raw_passages-*-of-*.pkl"))
        raise SourceError(
            f"no passages/raw_passages-S-of-N.jsonl under {src}",
            hint="the release's passages are JSONL files" + (
                " (only .pkl passage files were found: convert them to JSONL with the reference's "
                "retriever/api/passage_utils.py, on files you trust)" if pkls else ""
            ),
        )
    totals = {n for n, _ in passages.values()}
    if len(totals) != 1:
        raise SourceError(f"passage files of {src} disagree on the number of shards ({sorted(totals)})", hint="use one release")
    num_shards = totals.pop()
    vectors = _vector_files(src, fmt)
    wanted = sorted(passages) if shards is None else sorted(set(shards))
    out: list[ReleaseShard] = []
    for s in wanted:
        if s not in passages:
            raise SourceError(f"shard {s} has no passages file under {src}", hint=f"shards present: {sorted(passages)}")
        if s not in vectors:
            other = "npy" if fmt == "pickle" else "pickle"
            raise SourceError(
                f"shard {s} has no passages_{s:02d}.{'pkl' if fmt == 'pickle' else 'npy'} under {src}",
                hint=f"download the embeddings, or pass --vectors-format {other} if that is the form you have",
            )
        vec, ids = vectors[s]
        out.append(ReleaseShard(s, num_shards, passages[s][1], vec, ids, fmt))
    return out


def open_vectors(shard: ReleaseShard, *, trust_pickles: bool = False, scratch: Path | None = None) -> ShardVectors:
    """The shard's vectors memory-mapped plus their ids; a pickle only with ``trust_pickles``."""
    if shard.format == "pickle":
        if not trust_pickles:
            raise UntrustedPickle(
                f"{shard.vectors} is a pickle: loading a pickle can run code that the file names",
                hint="pass --trust-pickles if you trust where the file came from (the importer still never "
                "unpickles it: it reads the opcodes and maps the array), or convert it to "
                f"passages_{shard.index:02d}.npy + passages_{shard.index:02d}_ids.npy and use --vectors-format npy",
            )
        scan = scan_embedding_pickle(shard.vectors)
        vectors = scan.array(scratch / f"passages_{shard.index:02d}.decoded.npy" if scratch else None)
        ids = scan.ids
    else:
        assert shard.ids is not None
        try:
            vectors = np.load(shard.vectors, mmap_mode="r", allow_pickle=False)
            ids = np.load(shard.ids, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise SourceError(f"{shard.vectors} or its ids is not a plain .npy array ({exc})", hint="write them with np.save") from exc
        if not np.issubdtype(ids.dtype, np.integer):
            raise SourceError(f"{shard.ids} holds {ids.dtype}, not integer ids", hint="save the ids as int64")
        ids = np.asarray(ids, dtype=np.int64)
    if vectors.ndim != 2 or vectors.dtype.kind != "f":
        raise SourceError(
            f"{shard.vectors}: vectors are {vectors.dtype} {vectors.shape}, expected a float (n, d) array",
            hint="this is not an embedding file of the release",
        )
    if ids.ndim != 1 or len(ids) != len(vectors):
        raise SourceError(
            f"{shard.vectors}: {len(ids)} ids for {len(vectors)} vectors",
            hint="the file is damaged: download it again",
        )
    return ShardVectors(ids=ids, vectors=vectors, source=str(shard.vectors))


@dataclass
class PassageBatch:
    """Release passages read from one shard file: their ids, texts, and what was skipped."""

    ids: np.ndarray
    texts: list[str]
    origin_ids: list[str | None]
    malformed: list[int]  # line numbers (1-based) of records that were skipped
    bytes_read: int = 0


def iter_passages(shard: ReleaseShard, batch: int = 8192) -> Iterator[PassageBatch]:
    """The shard's passages in file order, in batches; malformed lines are skipped and reported.

    A record must have ``text`` (str) and ``id`` (int); ``shard_id``/``num_shards``, when present,
    must name this shard (a file from another shard is refused, not silently mixed in).
    """
    ids: list[int] = []
    texts: list[str] = []
    origins: list[str | None] = []
    malformed: list[int] = []
    nbytes = 0
    with shard.passages.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            nbytes += len(line)
            if not line.strip():
                continue
            try:
                rec = loads(line)
                text, pid = rec["text"], rec["id"]
                if not isinstance(text, str) or not isinstance(pid, int) or isinstance(pid, bool):
                    raise TypeError
            except (JSONDecodeError, KeyError, TypeError):
                malformed.append(lineno)
                continue
            sid, n = rec.get("shard_id", shard.index), rec.get("num_shards", shard.num_shards)
            if sid != shard.index or n != shard.num_shards:
                raise SourceError(
                    f"{shard.passages} line {lineno} belongs to shard {sid} of {n}, not {shard.index} of {shard.num_shards}",
                    hint="the release's files were renamed or mixed: restore the original names",
                )
            ids.append(pid)
            texts.append(text)
            origin = rec.get("origin_id")
            origins.append(None if origin is None else str(origin))
            if len(ids) >= batch:
                yield PassageBatch(np.asarray(ids, dtype=np.int64), texts, origins, malformed, nbytes)
                ids, texts, origins, malformed, nbytes = [], [], [], [], 0
    if ids or malformed:
        yield PassageBatch(np.asarray(ids, dtype=np.int64), texts, origins, malformed, nbytes)


class Alignment:
    """Which vector row belongs to a passage id: positional when the ids are 0..n-1, else joined on id.

    Tracks which vector rows were used so that vectors without a passage, and passages repeating an
    id, are counted (never silently paired with the wrong vector).
    """

    def __init__(self, ids: np.ndarray) -> None:
        self.n = len(ids)
        self.used = np.zeros(self.n, dtype=bool)
        self.positional = bool(np.array_equal(ids, np.arange(self.n, dtype=ids.dtype))) if self.n else True
        self.duplicate_vector_ids = 0
        if not self.positional:
            order = np.argsort(ids, kind="stable")
            sorted_ids = ids[order]
            first = np.ones(self.n, dtype=bool)
            first[1:] = sorted_ids[1:] != sorted_ids[:-1]
            self.duplicate_vector_ids = int(self.n - first.sum())
            self._keys = sorted_ids[first]
            self._rows = order[first]

    @property
    def mode(self) -> str:
        return "positional" if self.positional else "joined_on_id"

    def rows(self, passage_ids: np.ndarray) -> tuple[np.ndarray, int]:
        """Vector row per passage id (-1: no vector, or the id was already used) and how many repeats."""
        if self.positional:
            rows = np.where((passage_ids >= 0) & (passage_ids < self.n), passage_ids, -1)
        else:
            pos = np.searchsorted(self._keys, passage_ids)
            pos_c = np.minimum(pos, max(len(self._keys) - 1, 0))
            hit = (pos < len(self._keys)) & (self._keys[pos_c] == passage_ids) if len(self._keys) else np.zeros(len(passage_ids), bool)
            rows = np.where(hit, self._rows[pos_c] if len(self._keys) else -1, -1)
        rows = rows.astype(np.int64)
        valid = rows >= 0
        repeat = np.zeros(len(rows), dtype=bool)
        repeat[valid] = self.used[rows[valid]]
        # a repeat inside this batch: keep the first occurrence
        vr = rows[valid & ~repeat]
        _, first_idx = np.unique(vr, return_index=True)
        inside = np.ones(len(vr), dtype=bool)
        inside[first_idx] = False
        idx = np.flatnonzero(valid & ~repeat)
        repeat[idx[inside]] = True
        rows[repeat] = -1
        self.used[rows[rows >= 0]] = True
        return rows, int(repeat.sum())

    def unused(self) -> int:
        """Vector rows no passage claimed (duplicates of an id included)."""
        return int(self.n - self.used.sum())
