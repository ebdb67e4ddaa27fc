"""Faults against the real server (`openscholar serve`, embedded and Redis modes): no job is ever lost.

- the worker's MAIN process is SIGKILLed mid-batch: `serve` restarts it (and logs why), /readyz is
  503 while no worker sends heartbeats, the job it was running is taken back, every job finishes;
- `serve` is SIGTERMed mid-job, then started again: every job of the batch finishes.
The LLM is the scripted one behind a real OpenAI-compatible HTTP endpoint that takes a set time per
call (bench/service_llm_stub.py), so a job is still running when the fault lands.
bench/service_reliability.py runs the same faults over >= 50 jobs and prints the fault table.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import (
    REPO,
    free_port,
    load,
    make_key,
    redis_available,
    service_env,
)

pytestmark = pytest.mark.slow

MODES = ["embedded", "redis"]


class Serve:
    """`openscholar serve` (with its embedded worker) as a subprocess with its own log."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.port = env, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        full = {**os.environ, **self.env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "OMP_NUM_THREADS": "1"}
        fh = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--embedded-worker", "--port",
                                      str(self.port), "--log-level", "warning"], env=full, cwd=REPO, stdout=fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.text()[-3000:]
            try:
                resp = httpx.get(self.url + "/readyz", timeout=5)
                if resp.status_code == 200:
                    return resp.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"serve not ready: {self.text()[-3000:]}")

    def worker_pid(self) -> int:
        """The embedded worker's main process (the latest one `serve` started)."""
        pids = re.findall(r"started an embedded worker \(pid (\d+)\)|embedded worker restarted \(pid (\d+)", self.text())
        assert pids, self.text()[-2000:]
        return int(next(p for p in pids[-1] if p))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> float:
        start = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return time.monotonic() - start


@pytest.fixture()
def deployment(request: pytest.FixtureRequest, small_datastore: Path, tmp_path: Path) -> Iterator[dict]:
    from service_llm_stub import StubServer

    mode = request.param
    if mode == "redis" and not redis_available():
        pytest.skip("Redis is not answering at 127.0.0.1:6379")
    llm_port = free_port()
    stub = StubServer(llm_port, 1.5).start()
    env = service_env(small_datastore, tmp_path / "cache", OPENSCHOLAR_LLM__BACKEND="openai",
                      OPENSCHOLAR_LLM__BASE_URL=f"http://127.0.0.1:{llm_port}/v1", OPENSCHOLAR_LLM__MAX_RETRIES="0",
                      OPENSCHOLAR_SERVICE__QUEUE=f"faults-{uuid.uuid4().hex[:8]}",
                      OPENSCHOLAR_SERVICE__RATE_LIMIT_BURST="100000", OPENSCHOLAR_SERVICE__JOB_LEASE_S="3",
                      OPENSCHOLAR_SERVICE__WORKER_HEARTBEAT_S="1", OPENSCHOLAR_SERVICE__WORKER_STALE_S="4",
                      OPENSCHOLAR_SERVICE__RECOVERY_INTERVAL_S="1", OPENSCHOLAR_SERVICE__VISIBILITY_TIMEOUT_S="120",
                      OPENSCHOLAR_SERVICE__EMBEDDED_WORKER_STOP_S="2")
    if mode == "embedded":
        del env["OPENSCHOLAR_SERVICE__BROKER_URL"]
    key = make_key(load(env), "alice")
    procs: list[Serve] = []
    try:
        yield {"mode": mode, "env": env, "key": key, "tmp": tmp_path, "procs": procs, "stub": stub}
    finally:
        for p in procs:
            p.stop(signal.SIGKILL, 10)
        stub.stop()


def _serve(dep: dict) -> Serve:
    serve = Serve(dep["env"], dep["tmp"] / "serve.log").start()
    dep["procs"].append(serve)
    serve.wait_ready()
    return serve


def _client(dep: dict, serve: Serve) -> httpx.Client:
    return httpx.Client(base_url=serve.url, headers={"Authorization": f"Bearer {dep['key']}"}, timeout=30)


def _wait_running(c: httpx.Client, batch_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = c.get(f"/v1/batches/{batch_id}").json()["jobs"]
        running = [j["id"] for j in jobs if j["status"] == "running"]
        if running:
            return running[0]
        time.sleep(0.1)
    raise AssertionError("no job started")


def _wait_done(c: httpx.Client, batch_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        resp = c.get(f"/v1/batches/{batch_id}")
        if resp.status_code == 200 and (state := resp.json())["done"]:
            return state
        time.sleep(0.5)
    raise AssertionError(f"batch not done: {state.get('counts')}")


@pytest.mark.parametrize("deployment", MODES, indirect=True)
def test_worker_main_process_killed_mid_batch(deployment: dict) -> None:
    serve = _serve(deployment)
    c = _client(deployment, serve)
    batch = c.post("/v1/batches", json={"questions": [f"Does exercise {i} lower blood pressure?" for i in range(6)],
                                        "options": {"feedback": False}}).json()
    victim = _wait_running(c, batch["id"])
    old = serve.worker_pid()
    os.kill(old, signal.SIGKILL)  # the main process only: its pool process follows (parent-death signal)
    not_ready = None
    deadline = time.monotonic() + 30
    while not_ready is None and time.monotonic() < deadline:
        resp = httpx.get(serve.url + "/readyz", timeout=5)
        if resp.status_code == 503:
            not_ready = resp.json()["checks"]["workers"]
        time.sleep(0.3)
    assert not_ready is not None and not not_ready["ok"], "/readyz stayed 200 with no live worker"
    assert "no worker has sent a heartbeat in the last 4 s" in not_ready["detail"], not_ready
    state = _wait_done(c, batch["id"])
    assert state["counts"]["succeeded"] == 6, (state, serve.text()[-3000:])
    log = serve.text()
    assert f"embedded worker (pid {old}) was killed by SIGKILL" in log, log[-3000:]
    assert serve.worker_pid() != old
    job = c.get(f"/v1/jobs/{victim}").json()
    assert job["attempts"] >= 2 and job["result"]["references"], job
    assert serve.wait_ready()["checks"]["workers"]["ok"]


@pytest.mark.parametrize("deployment", MODES, indirect=True)
def test_serve_sigtermed_mid_job_then_restarted(deployment: dict) -> None:
    serve = _serve(deployment)
    c = _client(deployment, serve)
    batch = c.post("/v1/batches", json={"questions": [f"Is obesity {i} linked to diabetes?" for i in range(4)],
                                        "options": {"feedback": False}}).json()
    victim = _wait_running(c, batch["id"])
    took = serve.stop(signal.SIGTERM)
    assert serve.proc is not None and serve.proc.returncode is not None and took < 30, took
    store = _store(deployment["env"])
    before = store.get(victim)
    assert before is not None and before.status != "succeeded" or before.attempts == 1
    again = _serve(deployment)
    state = _wait_done(_client(deployment, again), batch["id"])
    assert state["counts"]["succeeded"] == 4, (state, again.text()[-3000:])
    assert all(j["status"] == "succeeded" for j in state["jobs"])


def _store(env: dict[str, str]):
    from api.celery_app import build_store

    return build_store(load(env))
