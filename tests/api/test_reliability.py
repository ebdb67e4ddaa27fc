"""Failures the service must survive: a worker killed mid-job, the LLM endpoint down, Redis restarted.

The LLM is the scripted one behind a real OpenAI-compatible HTTP endpoint (bench/service_llm_stub.py),
so calls take a set time and the endpoint can be stopped; the client is the real ``openai`` backend.
Longer runs (>= 50 jobs, a batch across a Redis restart): bench/service_reliability.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import (
    Client,
    LiveServer,
    WorkerProcess,
    free_port,
    load,
    make_key,
    service_env,
)

pytestmark = pytest.mark.redis


def _stub(port: int, delay: float):
    from service_llm_stub import StubServer

    return StubServer(port, delay).start()


@pytest.fixture(scope="module")
def stub_service(small_datastore: Path, tmp_path_factory: pytest.TempPathFactory, redis_required: None) -> Iterator[dict]:
    """A deployment whose LLM is an HTTP endpoint: API + two workers."""
    from api.app import create_app

    cache = tmp_path_factory.mktemp("svc-stub")
    llm_port = free_port()
    stub = _stub(llm_port, 0.0)
    env = service_env(small_datastore, cache, OPENSCHOLAR_LLM__BACKEND="openai",
                      OPENSCHOLAR_LLM__BASE_URL=f"http://127.0.0.1:{llm_port}/v1", OPENSCHOLAR_LLM__MAX_RETRIES="0",
                      OPENSCHOLAR_LLM__TIMEOUT_S="10", OPENSCHOLAR_SERVICE__MAX_RETRIES="2",
                      OPENSCHOLAR_SERVICE__RATE_LIMIT_BURST="100000")
    workers = [WorkerProcess(env, cache / f"worker{i}.log", name=f"w{i}").start() for i in range(2)]
    settings = load(env)
    server = LiveServer(create_app(settings)).start()
    try:
        for w in workers:
            w.wait_ready()
        yield {"env": env, "url": server.url, "stub": stub, "llm_port": llm_port, "workers": workers,
               "client": Client(server.url, make_key(settings, "alice")), "cache": cache}
    finally:
        server.stop()
        for w in workers:
            w.stop()
        stub.stop()


def test_llm_down_gives_503_and_the_worker_recovers(stub_service: dict) -> None:
    c: Client = stub_service["client"]
    stub_service["stub"].stop()
    resp = c.post("/v1/answer", json={"question": "Does aspirin prevent heart attacks?", "options": {"feedback": False}})
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert "LLM endpoint" in body["message"] and "unavailable" in body["message"]
    assert "Traceback" not in resp.text and body["retryable"] is True
    assert resp.headers["Retry-After"] and resp.headers["X-Job-Id"]
    ready = httpx.get(stub_service["url"] + "/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["llm"]["ok"] is False
    # The job retries with backoff, then fails with the LLM's message (it does not hang).
    job = c.wait_job(resp.headers["X-Job-Id"], timeout=60)
    assert job["status"] == "failed" and job["retries"] == 2 and "LLM endpoint" in job["error"]["message"]
    # The endpoint comes back: the same workers answer again.
    stub_service["stub"] = _stub(stub_service["llm_port"], 0.0)
    ok = c.post("/v1/answer", json={"question": "Does aspirin prevent heart attacks?", "options": {"feedback": False}})
    assert ok.status_code == 200, ok.text
    assert ok.json()["references"]


def _worker_pid(job: dict) -> int | None:
    owner = job.get("worker") or ""
    parts = owner.split(":")
    return int(parts[1]) if len(parts) == 3 else None


def test_worker_killed_mid_job_loses_nothing(stub_service: dict) -> None:
    from api.celery_app import store

    c: Client = stub_service["client"]
    stub_service["stub"].delay_s = 0.8
    a, _ = stub_service["workers"]
    ids = [c.post("/v1/jobs", json={"question": f"Does exercise {i} reduce blood pressure?",
                                    "options": {"feedback": False}}).json()["id"] for i in range(8)]
    # Wait until worker a is running one of them, then SIGKILL it whole (parent and pool process).
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        for job in store().get_many(ids):
            pid = _worker_pid(job.model_dump()) if job and job.status == "running" else None
            if pid and os.getpgid(pid) == a.proc.pid:
                victim = job.id
                break
        time.sleep(0.05)
    assert victim is not None, "worker a never ran a job"
    a.kill()
    finals = [c.wait_job(jid, timeout=120) for jid in ids]
    stub_service["stub"].delay_s = 0.0
    assert [j["status"] for j in finals] == ["succeeded"] * len(ids), [j["error"] for j in finals]
    taken_over = next(j for j in finals if j["id"] == victim)
    assert taken_over["attempts"] >= 2, "the killed job ran again on the other worker"
    assert all(j["result"]["passages"] and j["result"]["text"] for j in finals)
    a.start()  # leave two workers for later tests


def test_an_empty_or_garbled_answer_is_a_failure_with_a_reason(stub_service: dict) -> None:
    c: Client = stub_service["client"]
    try:
        for reply, reason in (("", "empty answer"), ("%%% ### 123 !!! 456 ??? 789", "no words")):
            stub_service["stub"].reply = reply
            resp = c.post("/v1/answer", json={"question": "Does aspirin prevent heart attacks?",
                                              "options": {"feedback": False}})
            assert resp.status_code == 422, resp.text
            assert reason in resp.json()["message"] and "Traceback" not in resp.text
            job = c.get(f"/v1/jobs/{resp.headers['X-Job-Id']}").json()
            assert job["status"] == "failed" and job["error"]["error"] == "UnusableAnswer" and job["result"] is None
    finally:
        stub_service["stub"].reply = None


# Last in the file: create_app() configures the process-wide Celery app, so after this test the
# in-process API of `stub_service` would publish to the private Redis this test stops.
@pytest.mark.slow
def test_redis_restart_during_a_batch(small_datastore: Path, tmp_path: Path) -> None:
    """A private Redis on its own port (never the shared one) is stopped mid-batch and restarted."""
    from api.app import create_app

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    redis_cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                 "--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    redis_proc = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
    llm_port = free_port()
    stub = _stub(llm_port, 0.3)
    url = f"redis://127.0.0.1:{port}/0"
    env = service_env(small_datastore, tmp_path / "cache", OPENSCHOLAR_SERVICE__BROKER_URL=url,
                      OPENSCHOLAR_LLM__BACKEND="openai", OPENSCHOLAR_LLM__BASE_URL=f"http://127.0.0.1:{llm_port}/v1",
                      OPENSCHOLAR_SERVICE__RATE_LIMIT_BURST="100000")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        time.sleep(0.5)
        settings = load(env)
        server = LiveServer(create_app(settings)).start()
        c = Client(server.url, make_key(settings, "alice"))
        worker.wait_ready()
        batch = c.post("/v1/batches", json=[f"Is obesity {i} linked to diabetes?" for i in range(10)]).json()
        time.sleep(2)
        subprocess.run(["redis-cli", "-p", str(port), "shutdown"], check=False, capture_output=True)
        redis_proc.wait(10)
        codes = [c.post("/v1/jobs", json={"question": "q?"}).status_code, c.get(f"/v1/batches/{batch['id']}").status_code,
                 c.get(f"/v1/jobs/{'job_x'}").status_code]
        time.sleep(3)
        codes.append(c.post("/v1/search", json={"query": "diabetes", "k": 2}).status_code)
        assert codes[:3] == [503, 503, 503] and codes[3] == 200, codes
        redis_proc = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        state: dict = {}
        while time.monotonic() < deadline:
            resp = c.get(f"/v1/batches/{batch['id']}")
            assert resp.status_code in (200, 503)
            if resp.status_code == 200 and (state := resp.json())["done"]:
                break
            time.sleep(0.5)
        Path("/tmp/redis_worker.log").write_text(worker.log_path.read_text())
        assert state.get("counts", {}).get("succeeded") == 10, (state, worker.log_path.read_text()[-4000:])
        server.stop()
    finally:
        worker.stop()
        stub.stop()
        redis_proc.terminate()
        redis_proc.wait(10)
