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
    proc, url = _start_serve(env, tmp_path / "serve.log")
    try:
        ready = _wait_ready(url)
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


@pytest.mark.parametrize(
    ("target", "sig"),
    [("serve", signal.SIGTERM), ("serve", signal.SIGKILL), ("group", signal.SIGINT), ("group", signal.SIGTERM)],
    ids=["sigterm-serve", "sigkill-serve", "ctrl-c", "sigterm-group"],
)
def test_embedded_worker_never_outlives_serve(small_datastore: Path, tmp_path: Path, target: str,
                                              sig: signal.Signals) -> None:
    """However `serve` ends, its embedded worker and the worker's pool processes are gone soon after."""
    env = service_env(small_datastore, tmp_path / "cache")
    del env["OPENSCHOLAR_SERVICE__BROKER_URL"]
    proc, url = _start_serve(env, tmp_path / "serve.log")
    marker = f"OPENSCHOLAR_CACHE_DIR={env['OPENSCHOLAR_CACHE_DIR']}"
    try:
        _wait_ready(url)
        # The worker's main process and its (concurrency 1) pool process: both must go.
        deadline = time.monotonic() + 120
        while len(workers := _processes_with(marker) - {proc.pid}) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) >= 2, (workers, (tmp_path / "serve.log").read_text()[-3000:])

        start = time.monotonic()
        if target == "group":  # what a terminal's Ctrl-C or a supervisor stopping the group does
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        while (left := _processes_with(marker) - {proc.pid}) and time.monotonic() < start + 30:
            time.sleep(0.2)
        waited = time.monotonic() - start
        assert not left, (f"{sorted(left)} still running {waited:.0f} s after {sig.name} to {target}",
                          (tmp_path / "serve.log").read_text()[-3000:])
        print(f"{target} {sig.name}: serve's worker processes gone after {waited:.1f} s")
        proc.wait(30)  # serve itself ends too (TimeoutExpired otherwise)
    finally:
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def _start_serve(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    full_env = {**os.environ, **env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port)], env=full_env,
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(url: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=3).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return httpx.get(url + "/readyz", timeout=10).json()


def _processes_with(marker: str) -> set[int]:
    """Live processes whose environment holds `marker` (a zombie's environment reads as empty)."""
    found = set()
    needle = marker.encode() + b"\0"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes():
                    found.add(int(entry.name))
            except OSError:  # gone meanwhile, or not ours to read
                pass
    return found
