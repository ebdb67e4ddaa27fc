"""Integrity of format 2: bytes overwritten in place in every kind of file are caught before a search
serves; stamps spare re-hashing; `datastore verify` scrubs and resumes; `info` never reads passages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datastore.builder import DatastoreBuilder, delete_papers
from datastore.config import DatastoreConfig
from datastore.datastore import Datastore
from datastore.errors import DatastoreCorrupted
from datastore.integrity import VERIFY_STATE, check_files, scrub
from datastore.manifest import MANIFEST, read_manifest


@pytest.fixture(scope="module")
def built(scifact_subset: dict, embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-part datastore with one deleted paper (so the tombstone file has set bytes)."""
    base = tmp_path_factory.mktemp("integrity")
    ids = sorted(scifact_subset["docs"])[:24]
    src = base / "a.jsonl"
    src.write_text("".join(json.dumps({"id": i, "title": scifact_subset["docs"][i]["title"],
                                       "text": scifact_subset["docs"][i]["text"]}) + "\n" for i in ids))
    root = base / "ds"
    DatastoreBuilder(embedder, DatastoreConfig(part_papers=10), progress=False).build([str(src)], root)
    delete_papers(root, [ids[3]])
    return root


@pytest.fixture
def ds_copy(built: Path, tmp_path: Path) -> Path:
    """A private copy (mtimes preserved, so the stamps still match)."""
    dst = tmp_path / "ds"
    shutil.copytree(built, dst, copy_function=shutil.copy2)
    return dst


def overwrite(path: Path, at: int | None = None, *, keep_mtime: bool = False) -> None:
    """Flip 8 bytes in place (same size), optionally restoring the mtime as a sneaky writer would."""
    st = path.stat()
    pos = st.st_size // 2 if at is None else at
    with path.open("r+b") as fh:
        fh.seek(pos)
        old = fh.read(8)
        fh.seek(pos)
        fh.write(bytes(b ^ 0xFF for b in old))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def index_file(root: Path) -> str:
    info = read_manifest(root).index
    assert info is not None
    return next(f"index/{f}" for f in info.files if f.endswith(".faiss"))


KINDS = ["parts/part-00001/passages.sqlite", "parts/part-00000/vectors.f16.npy", "INDEX", "index/index.json",
         "tombstones.u8"]


@pytest.mark.parametrize("rel", KINDS)
def test_bytes_overwritten_in_place_are_refused_on_open(ds_copy: Path, rel: str) -> None:
    rel = index_file(ds_copy) if rel == "INDEX" else rel
    Datastore.open(ds_copy).close()  # intact: opens
    overwrite(ds_copy / rel)
    with pytest.raises(DatastoreCorrupted, match="does not match its checksum") as exc:
        Datastore.open(ds_copy)
    assert rel in exc.value.message and str(ds_copy) in exc.value.hint


def test_overwritten_manifest_is_refused(ds_copy: Path) -> None:
    path = ds_copy / MANIFEST
    text = path.read_text()
    at = text.index('"passages": ') + len('"passages": ')
    digit = text[at]
    path.write_text(text[:at] + str((int(digit) + 1) % 10) + text[at + 1 :])  # same size, one count changed
    with pytest.raises(DatastoreCorrupted, match="does not match its checksum"):
        Datastore.open(ds_copy)
    overwrite(path)
    with pytest.raises(DatastoreCorrupted, match="manifest"):
        Datastore.open(ds_copy)


def test_a_touched_but_identical_file_is_served_and_nothing_is_rewritten(ds_copy: Path) -> None:
    rel = "parts/part-00002/vectors.f16.npy"
    manifest_bytes = (ds_copy / MANIFEST).read_bytes()
    os.utime(ds_copy / rel, ns=(1, 1_000_000_000))
    manifest = read_manifest(ds_copy)
    assert check_files(ds_copy, manifest) == [rel], "only the file whose stamp changed is re-hashed"
    ds = Datastore.open(ds_copy)
    assert len(ds) == manifest.live
    assert (ds_copy / MANIFEST).read_bytes() == manifest_bytes


def test_read_errors_behind_unchanged_stamps_become_datastore_errors(ds_copy: Path) -> None:
    db = ds_copy / "parts/part-00001/passages.sqlite"
    with db.open("r+b") as fh:  # destroy the SQLite header and the first pages, keep size and mtime
        st = db.stat()
        fh.write(b"\0" * 8192)
    os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns))
    ds = Datastore.open(ds_copy)  # stamps match: trusted on open ...
    start = ds.manifest.parts[1].start
    with pytest.raises(DatastoreCorrupted, match="passages.sqlite .* unreadable") as exc:
        ds.get([start])  # ... and the SQLite error is the datastore's own, with a hint
    assert "part-00001" in exc.value.hint
    with pytest.raises(DatastoreCorrupted):
        list(ds.iter_passages())
    rel = index_file(ds_copy)
    overwrite(ds_copy / rel, at=0, keep_mtime=True)  # the FAISS header itself
    with pytest.raises(DatastoreCorrupted, match="unreadable"):
        Datastore.open(ds_copy)


def test_verify_scrub_finds_silent_corruption_and_resumes(ds_copy: Path) -> None:
    manifest = read_manifest(ds_copy)
    n_files = len(manifest.all_files())
    seen: list[str] = []

    def stop_after_two(rel: str) -> None:
        seen.append(rel)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scrub(ds_copy, manifest, progress=False, on_file=stop_after_two)
    state = json.loads((ds_copy / VERIFY_STATE).read_text())
    assert sorted(state["verified"]) == sorted(seen[:2])
    report = scrub(ds_copy, manifest, progress=False)
    assert sorted(report.skipped) == sorted(seen[:2]) and len(report.checked) == n_files - 2 and not report.bad
    assert not (ds_copy / VERIFY_STATE).exists()
    rel = "parts/part-00000/vectors.f16.npy"
    overwrite(ds_copy / rel, keep_mtime=True)  # bit rot: the stamp still matches
    Datastore.open(ds_copy).close()
    res = _cli("datastore", "verify", str(ds_copy), "--no-progress", cwd=ds_copy.parent)
    assert res.returncode == 1 and rel in res.stdout, res.stdout + res.stderr


def test_info_reads_the_manifest_not_the_passages(ds_copy: Path) -> None:
    manifest = read_manifest(ds_copy)
    for p in manifest.parts:  # garbage passages behind matching stamps: any passage read would fail
        db = ds_copy / "parts" / p.name / "passages.sqlite"
        st = db.stat()
        db.write_bytes(np.random.default_rng(0).integers(0, 256, st.st_size, dtype=np.uint8).tobytes())
        os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = _cli("datastore", "info", str(ds_copy), "--json", cwd=ds_copy.parent)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["passages"] == manifest.passages and info["live_passages"] == manifest.live
    assert info["deleted_passages"] == manifest.deleted_passages >= 1 and info["parts"] == 3
    assert info["index"]["kind"] == "flat" and info["papers"] == 24
    assert info["disk_bytes"] == sum(s.bytes for s in manifest.all_files().values())
    os.utime(ds_copy / "tombstones.u8")
    fast = _cli("datastore", "info", str(ds_copy), "--fast", cwd=ds_copy.parent)
    assert fast.returncode == 2 and "tombstones.u8" in fast.stdout


def test_search_cli_refuses_a_corrupted_datastore(ds_copy: Path) -> None:
    overwrite(ds_copy / "parts/part-00002/vectors.f16.npy")
    res = _cli("search", "cerebral white matter", "--datastore", str(ds_copy), "-k", "3", cwd=ds_copy.parent)
    assert res.returncode == 2 and "vectors.f16.npy" in res.stderr and "hint" in res.stderr


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "cli", *args], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
