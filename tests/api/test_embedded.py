"""`openscholar serve` with no broker configured: embedded SQLite transport and job store, no server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import REPO, free_port, load, make_key, service_env

pytestmark = pytest.mark.slow


def test_serve_answers_with_no_redis(small_datastore: Path, tmp_path: Path) -> None:
    env = service_env(small_datastore, tmp_path / "cache")
    del env["OPENSCHOLAR_SERVICE__BROKER_URL"]
    settings = load(env)
    assert settings.service.broker_url is None
    key = make_key(settings, "alice")
    port = free_port()
    full_env = {**os.environ, **env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "openscholar.cli", "serve", "--port", str(port)], env=full_env,
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        ready = httpx.get(url + "/readyz", timeout=10).json()
        assert ready["checks"]["broker"]["detail"].startswith("sqla+sqlite"), ready
        resp = httpx.post(url + "/v1/answer", json={"question": "Does vitamin D improve bone density?"},
                          headers={"Authorization": f"Bearer {key}"}, timeout=200)
        assert resp.status_code in (200, 202), resp.text
        job_id = resp.headers["X-Job-Id"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            job = httpx.get(f"{url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()
            if job["status"] != "queued" and job["status"] != "running":
                break
            time.sleep(0.5)
        assert job["status"] == "succeeded" and job["result"]["references"], (job, (tmp_path / "serve.log").read_text()[-3000:])
        assert (tmp_path / "cache" / "service" / "jobs.sqlite").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
