"""Service fixtures: settings for a test deployment, live uvicorn servers, real Celery worker processes.

Everything is real: the Redis server at 127.0.0.1:6379 (a database and queue of the tests' own),
uvicorn on a loopback port, `openscholar worker` subprocesses, the small SciFact datastore. The LLM
is the scripted one (in process, or behind an OpenAI-compatible HTTP stub when a test needs slow
or failing calls).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

REDIS_URL = "redis://127.0.0.1:6379/13"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_available(url: str = REDIS_URL) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001
        return False


def service_env(datastore: Path, cache_dir: Path, **extra: str) -> dict[str, str]:
    """OPENSCHOLAR_* variables of one test deployment (the API and its workers read the same)."""
    env = {
        "OPENSCHOLAR_DATASTORE__PATH": str(datastore),
        "OPENSCHOLAR_CACHE_DIR": str(cache_dir),
        "OPENSCHOLAR_LLM__BACKEND": "scripted",
        "OPENSCHOLAR_CITATIONS__JUDGE": "lexical",
        "OPENSCHOLAR_ANSWER__MODE": "synthesis",  # the service's LLM paths; evidence mode is tested in openscholar
        "OPENSCHOLAR_RETRIEVAL__PIPELINE": "dense",
        "OPENSCHOLAR_SERVICE__BROKER_URL": REDIS_URL,
        "OPENSCHOLAR_SERVICE__QUEUE": f"test-{uuid.uuid4().hex[:10]}",
        "OPENSCHOLAR_SERVICE__JOB_LEASE_S": "3",
        "OPENSCHOLAR_SERVICE__VISIBILITY_TIMEOUT_S": "6",
        "OPENSCHOLAR_SERVICE__RETRY_BACKOFF_S": "0.5",
        "OPENSCHOLAR_SERVICE__ANSWER_DEADLINE_S": "20",
        "OPENSCHOLAR_SERVICE__JOB_TTL_S": "3600",  # keep the shared Redis clean
    }
    env.update(extra)
    return env


@contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load(env: dict[str, str]) -> Any:
    from openscholar.settings import load_settings

    with environ(env):
        return load_settings()


class LiveServer:
    """uvicorn serving an app on a loopback port, in a thread of the test process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class WorkerProcess:
    """An `openscholar worker` subprocess (its own process group, so it can be killed whole)."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str | None = None, concurrency: int = 1) -> None:
        self.name = name or f"w{uuid.uuid4().hex[:6]}"
        self.log_path = log_path
        self.cmd = [sys.executable, "-m", "cli", "worker", "-c", str(concurrency), "-n",
                    f"{self.name}@%h", "--log-level", "INFO"]
        self.env = {**os.environ, **env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.concurrency = concurrency
        self.starts = 0

    def start(self) -> WorkerProcess:
        self.starts += 1
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 300) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            text = self.log_path.read_text(errors="replace")
            if " ready." in text and text.count("engine warm in") + text.count("warming up the engine failed") >= \
                    self.concurrency * self.starts:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and pool processes), as a crashed machine would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if hasattr(self, "_log"):
            self._log.close()


class Client:
    """httpx against a live server with a key."""

    def __init__(self, url: str, key: str | None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=60)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)

    def wait_job(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.http.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {job}")


def make_key(settings: Any, name: str) -> str:
    from api.auth import KeyStore, keys_db_path

    return KeyStore(keys_db_path(settings)).create(name)


@pytest.fixture(scope="session")
def redis_required() -> None:
    if not redis_available():
        pytest.skip("Redis is not answering at 127.0.0.1:6379")


@pytest.fixture(scope="session")
def service(small_datastore: Path, tmp_path_factory: pytest.TempPathFactory, redis_required: None) -> Iterator[dict]:
    """One deployment for the session: a live API, one worker process, and two keys."""
    from api.app import create_app

    cache = tmp_path_factory.mktemp("svc")
    env = service_env(small_datastore, cache, OPENSCHOLAR_SERVICE__RATE_LIMIT_PER_MINUTE="100000",
                      OPENSCHOLAR_SERVICE__RATE_LIMIT_BURST="100000", OPENSCHOLAR_SERVICE__QUESTION_BURST="100000",
                      OPENSCHOLAR_SERVICE__QUESTION_RATE_PER_MINUTE="100000")
    worker = WorkerProcess(env, cache / "worker.log").start()
    settings = load(env)
    app = create_app(settings)
    server = LiveServer(app).start()
    keys = {"alice": make_key(settings, "alice"), "bob": make_key(settings, "bob")}
    try:
        worker.wait_ready()
        yield {"env": env, "settings": settings, "app": app, "url": server.url, "keys": keys, "worker": worker, "cache": cache}
    finally:
        server.stop()
        worker.stop()


@pytest.fixture()
def alice(service: dict) -> Iterator[Client]:
    c = Client(service["url"], service["keys"]["alice"])
    yield c
    c.close()
