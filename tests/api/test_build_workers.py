"""`datastore build --workers celery` with real Celery workers on the real Redis (database 12).

Two (three, in the kill test) `openscholar worker --queues build --pool solo` subprocesses build the
parts of a small SciFact slice; the result must be the local build's, file for file: the same sha256
of every part and index file, the same manifest (timestamps and file mtimes aside, which say when,
not what). A worker SIGKILLed in the middle of a part leaves an unfinished `.partial` directory;
its part is built again by another worker and the datastore is still the local build's.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import REPO, WorkerProcess, environ, load, redis_available
from tests.conftest import SCIFACT

REDIS_URL = "redis://127.0.0.1:6379/12"  # ds-dist's database: the answer tests use 13
PAPERS = 44  # + 1 duplicate = 45 records
PART_PAPERS = 15  # 3 parts
# Differ between two builds of the same datastore by design: when, not what.
WHEN = {"mtime_ns", "created_at", "updated_at", "checksum"}

pytestmark = pytest.mark.redis


class BuildWorker(WorkerProcess):
    """One `openscholar worker --queues build` subprocess (solo pool: it builds parts in its main process;
    prefork: in ``concurrency`` pool processes). Ready once Celery says so: a build worker warms no engine."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str, pool: str = "solo", concurrency: int = 1) -> None:
        super().__init__({**env, "PYTHONPATH": str(REPO)}, log_path, name, concurrency)
        self.cmd = ["nice", "-n", "10", sys.executable, "-m", "cli", "worker", "--queues", "build", "--pool", pool,
                    "-c", str(concurrency), "-n", f"{name}@%h", "--log-level", "INFO"]

    def wait_ready(self, timeout: float = 180) -> BuildWorker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            if " ready." in self.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready: {self.log_path.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def without_when(data: Any) -> Any:
    """JSON with the fields that record when (not what) removed, at any depth."""
    if isinstance(data, dict):
        return {k: without_when(v) for k, v in data.items() if k not in WHEN}
    if isinstance(data, list):
        return [without_when(v) for v in data]
    return data


def fingerprint(root: Path) -> dict[str, Any]:
    """What must be the same in two builds of the same sources: every data file's sha256, and the JSON
    files (manifest, part.json) less their timestamps. Derived sparse indexes are not part of it."""
    out: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or rel == ".lock" or rel.startswith("sparse/"):
            continue
        out[rel] = without_when(json.loads(path.read_text())) if path.suffix == ".json" else sha256(path)
    return out


@pytest.fixture(scope="module")
def corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BEIR dir of the first SciFact papers plus one paper repeated under another id (a duplicate to dedup)."""
    lines = (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:PAPERS]
    dup = json.loads(lines[3])
    dup["_id"] = "dup-of-" + dup["_id"]
    directory = tmp_path_factory.mktemp("dist-corpus")
    (directory / "corpus.jsonl").write_text("\n".join([*lines, json.dumps(dup)]) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def build_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not redis_available(REDIS_URL):
        pytest.skip("Redis is not answering at 127.0.0.1:6379")
    tag = uuid.uuid4().hex[:10]
    env = {
        "OPENSCHOLAR_CACHE_DIR": str(tmp_path_factory.mktemp("dist-cache")),
        "OPENSCHOLAR_SERVICE__BROKER_URL": REDIS_URL,
        "OPENSCHOLAR_SERVICE__QUEUE": f"dsdist-answers-{tag}",
        "OPENSCHOLAR_SERVICE__BUILD_QUEUE": f"dsdist-build-{tag}",
        "OPENSCHOLAR_SERVICE__BUILD_HEARTBEAT_S": "0.5",
        "OPENSCHOLAR_SERVICE__BUILD_STALL_S": "8",
        "OPENSCHOLAR_SERVICE__VISIBILITY_TIMEOUT_S": "60",
        "OPENSCHOLAR_SERVICE__JOB_TTL_S": "3600",
        "OPENSCHOLAR_DATASTORE__BATCH_SIZE": "8",  # many small embeds: progress to watch, time to kill mid-part
    }
    yield env
    drop_queue(env["OPENSCHOLAR_SERVICE__BUILD_QUEUE"])
    drop_queue(env["OPENSCHOLAR_SERVICE__QUEUE"])


def drop_queue(name: str) -> None:
    """Delete a test queue and the unacknowledged messages of its killed workers (restored nowhere now)."""
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    r.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")
    for key, value in r.hgetall("unacked").items():
        if name.encode() in value:
            r.hdel("unacked", key)
            r.zrem("unacked_index", key)


@pytest.fixture(scope="module")
def workers(build_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[BuildWorker]]:
    logs = tmp_path_factory.mktemp("dist-logs")
    started = [BuildWorker(build_env, logs / f"w{i}.log", f"dsdist{i}-{uuid.uuid4().hex[:4]}").start() for i in range(2)]
    try:
        for w in started:
            w.wait_ready()
        yield started
    finally:
        for w in started:
            w.stop()


@pytest.fixture(scope="module")
def local_build(corpus: Path, build_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the one-process build of the same sources with the same settings."""
    from datastore.builder import DatastoreBuilder
    from retriever.st_embedder import SentenceTransformerEmbedder

    settings = load(build_env)
    config = settings.datastore.model_copy(update={"part_papers": PART_PAPERS})
    root = tmp_path_factory.mktemp("dist-local") / "ds"
    DatastoreBuilder(SentenceTransformerEmbedder(settings.embedder), config, progress=False).build([str(corpus)], root)
    return root


def loaded_pids(log: Path) -> set[str]:
    """Worker processes that logged loading their embedder (api/build_tasks.py: "build worker PID: ...")."""
    return {line.split("build worker ", 1)[1].split(":", 1)[0] for line in log.read_text(errors="replace").splitlines()
            if "build worker " in line and "loaded in" in line}


def celery_build(corpus: Path, env: dict[str, str], root: Path, **kwargs: Any) -> Any:
    from api.build_coordinator import CeleryDatastoreBuilder
    from retriever.st_embedder import SentenceTransformerEmbedder

    with environ(env):
        settings = load(env)
        config = settings.datastore.model_copy(update={"part_papers": PART_PAPERS})
        builder = CeleryDatastoreBuilder(SentenceTransformerEmbedder(settings.embedder), config, settings,
                                         progress=False, timeout_s=600, **kwargs)
        report = builder.build([str(corpus)], root)
    return builder, report


def test_celery_build_equals_the_local_build(corpus, build_env, workers, local_build, tmp_path):
    root = tmp_path / "ds"
    builder, report = celery_build(corpus, build_env, root)
    assert report.parts_written == 3 and builder.stats.parts_sent == 3 and builder.stats.resent == 0
    # both workers took parts, each on the CPU here, and together they embedded every passage once
    assert len(builder.stats.workers) == 2, builder.stats.workers
    assert {w.device for w in builder.stats.workers.values()} == {"cpu"}
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["complete"] and manifest["duplicates"] >= 1 and len(manifest["parts"]) == 3
    assert sum(w.passages for w in builder.stats.workers.values()) == manifest["passages"]
    mine, reference = fingerprint(root), fingerprint(local_build)
    assert sorted(mine) == sorted(reference)
    assert [k for k in mine if mine[k] != reference[k]] == []
    assert not (root / ".build-locks").exists()
    assert not [p for p in (root / "parts").iterdir() if ".partial" in p.name]


@pytest.mark.slow
def test_a_worker_killed_mid_part_is_replaced_and_the_build_equals_the_local_one(
    corpus, build_env, workers, local_build, tmp_path
):
    from api.build_tasks import build_part_task

    third = BuildWorker(build_env, tmp_path / "w3.log", f"dsdist3-{uuid.uuid4().hex[:4]}").start().wait_ready()
    pool = [*workers, third]
    sent: list[tuple[str, str]] = []
    killed: dict[str, Any] = {}
    root = tmp_path / "ds"
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = celery_build(corpus, build_env, root, on_sent=lambda part, tid: sent.append((part, tid)))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    coordinator = threading.Thread(target=run, daemon=True)
    coordinator.start()
    try:
        deadline = time.monotonic() + 300
        while not killed and time.monotonic() < deadline and coordinator.is_alive():
            for part, task_id in sent.copy():
                info = build_part_task.AsyncResult(task_id).info
                if isinstance(info, dict) and info.get("passages", 0) >= 8:  # embedding, not done
                    pid = int(str(info["worker"]).rsplit(":", 1)[1])
                    victim = next(w for w in pool if w.pid == pid)
                    victim.kill()
                    killed.update(part=part, task=task_id, worker=victim.name, at=info["passages"])
                    killed["partials"] = [p.name for p in (root / "parts").iterdir() if ".partial" in p.name]
                    break
            time.sleep(0.05)
        assert killed, f"no part was seen mid-way: {outcome}"
        coordinator.join(420)
        assert not coordinator.is_alive(), "the build did not finish after a worker was killed"
    finally:
        third.stop()
    assert "error" not in outcome, outcome.get("error")
    builder, _ = outcome["result"]
    # the killed worker left its part unfinished on disk, and that part was sent again
    assert any(name.startswith(killed["part"] + ".partial") for name in killed["partials"]), killed
    assert builder.stats.resent >= 1
    assert next(t for p, t in sent if p == killed["part"]) == killed["task"]
    assert len([1 for p, _ in sent if p == killed["part"]]) >= 2
    # ... and the datastore is the local build's, file for file
    mine, reference = fingerprint(root), fingerprint(local_build)
    assert sorted(mine) == sorted(reference)
    assert [k for k in mine if mine[k] != reference[k]] == []
    assert not [p for p in (root / "parts").iterdir() if ".partial" in p.name]


def test_a_celery_build_needs_a_broker_that_workers_share(tmp_path):
    """Without service.broker_url the service runs on an embedded SQLite broker: no place for other machines."""
    from api.build_coordinator import CeleryDatastoreBuilder
    from datastore.errors import DatastoreError
    from retriever.st_embedder import SentenceTransformerEmbedder

    env = {"OPENSCHOLAR_CACHE_DIR": str(tmp_path)}
    with environ(env):
        settings = load(env)
    assert settings.service.broker_url is None
    with pytest.raises(DatastoreError) as info:
        CeleryDatastoreBuilder(SentenceTransformerEmbedder(settings.embedder), settings.datastore, settings)
    assert "OPENSCHOLAR_SERVICE__BROKER_URL" in info.value.hint and "--workers local" in info.value.hint


@pytest.mark.parametrize("queues", ["bogus", "answer,builds", ","])
def test_the_worker_refuses_unknown_queues(queues):
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["worker", "--queues", queues], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert "unknown queue(s)" in text and "use answer, build or answer,build" in text


@pytest.mark.slow
def test_a_prefork_pool_process_killed_mid_part_is_replaced_and_its_part_redone(corpus, build_env, local_build, tmp_path):
    """SIGKILL one pool process of a prefork worker while it embeds: the parent requeues the part at once
    (reject_on_worker_lost), a replacement process loads its embedder (it is not killed for being slow to
    start), and the datastore is still the local build's."""
    from api.build_tasks import build_part_task

    env = {**build_env, "OPENSCHOLAR_SERVICE__BUILD_QUEUE": f"dsdist-prefork-{uuid.uuid4().hex[:8]}"}
    log = tmp_path / "prefork.log"
    worker = BuildWorker(env, log, f"dsdistpf-{uuid.uuid4().hex[:4]}", pool="prefork", concurrency=2).start()
    sent: list[tuple[str, str]] = []
    killed: dict[str, Any] = {}
    outcome: dict[str, Any] = {}
    root = tmp_path / "ds"
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 300
        while len(loaded_pids(log)) < 2 and time.monotonic() < deadline:  # both pool processes loaded
            time.sleep(0.5)
        assert len(loaded_pids(log)) == 2, log.read_text()[-3000:]

        def run() -> None:
            try:
                outcome["result"] = celery_build(corpus, env, root, on_sent=lambda p, t: sent.append((p, t)))
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome["error"] = exc

        coordinator = threading.Thread(target=run, daemon=True)
        coordinator.start()
        while not killed and time.monotonic() < deadline and coordinator.is_alive():
            for part, task_id in sent.copy():
                info = build_part_task.AsyncResult(task_id).info
                if isinstance(info, dict) and info.get("passages", 0) >= 8:
                    pid = int(str(info["worker"]).rsplit(":", 1)[1])
                    assert pid != worker.pid  # a pool process, not the worker's main process
                    os.kill(pid, signal.SIGKILL)
                    killed.update(part=part, pid=pid,
                                  partials=[p.name for p in (root / "parts").iterdir() if ".partial" in p.name])
                    break
            time.sleep(0.05)
        assert killed, f"no part was seen mid-way: {outcome}"
        coordinator.join(420)
        assert not coordinator.is_alive(), "the build did not finish after a pool process was killed"
        deadline = time.monotonic() + 300
        while len(loaded_pids(log)) < 3 and time.monotonic() < deadline:  # the replacement pool process
            time.sleep(0.5)
        assert worker.proc is not None and worker.proc.poll() is None
        text = log.read_text(errors="replace")
    finally:
        worker.stop()
        drop_queue(env["OPENSCHOLAR_SERVICE__BUILD_QUEUE"])
    assert "error" not in outcome, outcome.get("error")
    assert any(name.startswith(killed["part"] + ".partial") for name in killed["partials"]), killed
    assert "Timed out waiting for UP message" not in text
    assert len(loaded_pids(log)) == 3 and str(killed["pid"]) in loaded_pids(log)
    mine, reference = fingerprint(root), fingerprint(local_build)
    assert sorted(mine) == sorted(reference)
    assert [k for k in mine if mine[k] != reference[k]] == []


@pytest.mark.parametrize(("parts", "per_part", "planned"), [(3, 15, 3), (4, 12, 4), (1, 45, 1), (100, 1, 45)])
def test_parts_cuts_the_sources_into_about_that_many_parts(corpus, parts, per_part, planned):
    """`--parts N` (local and Celery alike): papers per part = ceil(45 records / N), and the plan has that many."""
    from cli.build_workers import parts_for
    from datastore.builder import plan_parts
    from datastore.config import DatastoreConfig

    config = DatastoreConfig()
    assert parts_for([str(corpus)], config, parts) == per_part
    assert len(plan_parts([str(corpus)], config.model_copy(update={"part_papers": per_part}))) == planned


@pytest.mark.slow
def test_the_cli_builds_with_celery_workers(corpus, build_env, workers, local_build, tmp_path):
    """`openscholar datastore build --workers celery --parts 3`: the same parts as the reference (45 records,
    15 per part), built by the workers, reported per worker with its device, and the same datastore."""
    root = tmp_path / "ds"
    env = {**os.environ, **build_env, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["nice", "-n", "10", sys.executable, "-m", "cli", "datastore", "build", str(corpus), "--out", str(root),
         "--workers", "celery", "--parts", "3", "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "celery: 3 part tasks sent (0 sent again after a lost worker)" in done.stderr
    # each worker that built parts, with its device (an earlier test may have killed one of the two)
    lines = [x for x in done.stderr.splitlines() if x.strip().startswith("worker ")]
    assert 1 <= len(lines) <= 2 and all(" on cpu: " in x for x in lines), done.stderr[-2000:]
    assert sum(int(x.split(" parts, ")[0].rsplit(" ", 1)[1]) for x in lines) == 3
    mine, reference = fingerprint(root), fingerprint(local_build)
    assert sorted(mine) == sorted(reference)
    assert [k for k in mine if mine[k] != reference[k]] == []
