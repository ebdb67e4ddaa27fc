"""The local build: parts, a real SIGKILL mid-part then resume, malformed records and --strict, PartWriter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from datastore.builder import DatastoreBuilder, PartPlan, build_part, plan_parts
from datastore.config import DatastoreConfig
from datastore.datastore import Datastore
from datastore.errors import DatastoreError, DatastoreIncomplete
from datastore.manifest import read_manifest
from datastore.models import Passage
from datastore.parts import PartWriter, finished_parts, part_name


def jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def docs_of(scifact_subset: dict, ids: list[str]) -> list[dict]:
    return [{"id": i, "title": scifact_subset["docs"][i]["title"], "text": scifact_subset["docs"][i]["text"]} for i in ids]


def test_part_writer_streams_rows_and_renames_into_place(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(7, 8)).astype(np.float32)
    rows = [Passage(-1, f"p{i}", "T", "some text " * i) for i in range(7)]
    with PartWriter(tmp_path, part_name(3), 8, meta={"k": 1}) as w:
        w.write(rows[:4], vecs[:4])
        assert [d.name.startswith("part-00003.partial") for d in (tmp_path / "parts").iterdir()] == [True]
        assert finished_parts(tmp_path) == [], "an unfinished part is never listed"
        w.write(rows[4:], vecs[4:])
        info = w.close()
    assert info.name == "part-00003" and info.count == 7 and info.meta == {"k": 1}
    stored = np.load(tmp_path / "parts" / "part-00003" / "vectors.f16.npy", mmap_mode="r")
    assert stored.dtype == np.float16 and stored.shape == (7, 8)
    assert np.allclose(stored, vecs, atol=1e-2)
    assert finished_parts(tmp_path) == [info]
    with pytest.raises(DatastoreError, match="expected"), PartWriter(tmp_path, part_name(4), 8) as w:
        w.write(rows[:2], vecs[:1])
    assert [d.name for d in (tmp_path / "parts").iterdir()] == ["part-00003"], "a failed part leaves nothing"


def test_build_part_is_idempotent_and_checks_its_plan(scifact_subset: dict, embedder, tmp_path: Path) -> None:
    src = jsonl(tmp_path / "s.jsonl", docs_of(scifact_subset, sorted(scifact_subset["docs"])[:4]))
    plan = plan_parts([str(src)], DatastoreConfig())[0]
    cfg = DatastoreConfig()
    info = build_part(tmp_path / "ds", plan, embedder, cfg)
    mtime = (tmp_path / "ds" / "parts" / plan.name / "vectors.f16.npy").stat().st_mtime_ns
    assert build_part(tmp_path / "ds", PartPlan.model_validate_json(plan.model_dump_json()), embedder, cfg) == info
    assert (tmp_path / "ds" / "parts" / plan.name / "vectors.f16.npy").stat().st_mtime_ns == mtime
    other = plan.model_copy(update={"byte_stop": 10})
    with pytest.raises(DatastoreError, match="another part"):
        build_part(tmp_path / "ds", other, embedder, cfg)


def _build_cmd(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cli", "datastore", "build", str(src), "--out", str(out), "--no-progress", *extra]


@pytest.mark.slow
def test_build_killed_mid_part_then_resumed_equals_an_uninterrupted_build(
    scifact_subset: dict, embedder, tmp_path: Path
) -> None:
    ids = sorted(scifact_subset["docs"])[:60]
    src = jsonl(tmp_path / "k.jsonl", docs_of(scifact_subset, ids))
    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENSCHOLAR_CACHE_DIR": str(tmp_path / "cache")}
    cmd = _build_cmd(src, out, "--part-papers", "6")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill while a part is being written, after at least 2 finished
        parts = out / "parts"
        if parts.is_dir() and len(finished_parts(out)) >= 2 and any(".partial" in d.name for d in parts.iterdir()):
            break
        if proc.poll() is not None:
            pytest.fail(f"build ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = {p.name: p.files for p in finished_parts(out)}
    assert 2 <= len(kept) < 10
    with pytest.raises(DatastoreIncomplete):
        Datastore.open(out)
    done = subprocess.run(cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"({len(kept)} kept from an earlier run)" in done.stderr
    ds = Datastore.open(out, verify="full")
    assert {p.name: p.files for p in ds.manifest.parts if p.name in kept} == kept, "finished parts were not redone"
    assert not [d for d in (out / "parts").iterdir() if ".partial" in d.name]
    passages = list(ds.iter_passages())
    assert {p.paper_id for p in passages} == set(ids)
    assert [p.passage_id for p in passages] == list(range(len(passages)))
    # the same sources built in one go give the same parts, counts and passages
    clean = tmp_path / "clean"
    DatastoreBuilder(embedder, DatastoreConfig(part_papers=6), progress=False).build([str(src)], clean)
    a, b = read_manifest(out), read_manifest(clean)
    assert [(p.name, p.count, p.start) for p in a.parts] == [(p.name, p.count, p.start) for p in b.parts]
    assert (a.passages, a.duplicates, a.live, a.papers_read) == (b.passages, b.duplicates, b.live, b.papers_read)
    assert [p.files["passages.sqlite"].sha256 for p in a.parts] == [p.files["passages.sqlite"].sha256 for p in b.parts]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "cli", *args], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_build_reports_malformed_lines_across_parts_and_strict_fails(scifact_subset: dict, tmp_path: Path) -> None:
    ids = sorted(scifact_subset["docs"])[:5]
    lines = [json.dumps(d) for d in docs_of(scifact_subset, ids)]
    src = tmp_path / "m.jsonl"
    src.write_text("\n".join([lines[0], "{broken", lines[1], lines[2], "[1]", lines[3], lines[4]]) + "\n")
    ok = _cli("datastore", "build", str(src), "--out", str(tmp_path / "m"), "--part-papers", "3", "--no-progress",
              cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "5 papers, 2 malformed records skipped (first at lines [2, 5])" in ok.stderr
    manifest = read_manifest(tmp_path / "m")
    assert len(manifest.parts) == 3 and manifest.papers_read == 5
    assert manifest.source_stats[0].malformed_lines == [2, 5]
    strict = _cli("datastore", "build", str(src), "--out", str(tmp_path / "s"), "--strict", "--no-progress", cwd=tmp_path)
    assert strict.returncode == 2 and "line 2" in strict.stderr
    with pytest.raises(DatastoreIncomplete):
        Datastore.open(tmp_path / "s")


@pytest.mark.slow
def test_cli_info_search_add_delete(scifact_subset: dict, tmp_path: Path) -> None:
    ids = sorted(scifact_subset["docs"])[:12]
    src = jsonl(tmp_path / "a.jsonl", docs_of(scifact_subset, ids[:8]))
    root = tmp_path / "ds"
    built = _cli("datastore", "build", str(src), "--out", str(root), "--part-papers", "4", "--no-progress", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    more = jsonl(tmp_path / "b.jsonl", docs_of(scifact_subset, ids[6:]))  # 2 papers already present
    added = _cli("datastore", "add", str(root), str(more), "--no-progress", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    gone = _cli("datastore", "delete", str(root), "--paper-id", ids[0], cwd=tmp_path)
    assert gone.returncode == 0 and f"deleted paper {ids[0]}" in gone.stderr
    info = json.loads(_cli("datastore", "info", str(root), "--json", cwd=tmp_path).stdout)
    m = read_manifest(root)
    assert info["parts"] == 3 and info["duplicates"] == m.duplicates >= 2 and info["deleted_passages"] >= 1
    assert info["live_passages"] == m.passages - m.duplicates - info["deleted_passages"]
    res = _cli("search", "cerebral white matter diffusion", "--datastore", str(root), "-k", "3", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)
    assert len(hits) == 3 and {"passage_id", "paper_id", "title", "text", "score"} <= set(hits[0])
    assert hits[0]["paper_id"] in ids[1:]
    missing = _cli("search", "x", "--datastore", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 2 and "no datastore at" in missing.stderr and "hint" in missing.stderr


def test_default_build_moves_a_format_1_cache_aside(tmp_path: Path) -> None:
    from cli.commands.datastore_cmd import _move_old_format_aside

    old = tmp_path / "datastore"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"format_version": 1, "shards": []}))
    (old / "shard-00000").mkdir()
    _move_old_format_aside(old)
    assert not old.exists() and (tmp_path / "datastore.format1" / "shard-00000").is_dir()
    current = tmp_path / "current"
    current.mkdir()
    (current / "manifest.json").write_text(json.dumps({"format_version": 2}))
    _move_old_format_aside(current)
    assert (current / "manifest.json").is_file(), "a format 2 datastore stays where it is"
