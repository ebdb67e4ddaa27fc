"""The README's service example on this machine, with the default settings: `openscholar serve`
(embedded worker, the packaged SmolLM2 on CPU), then

    POST /v1/answer {"question": "Does vitamin D improve bone density?", "options": {"feedback": true}}

as the README shows it. Reports the first response (200, or 202 after service.answer_deadline_s), the
job's final status, whether the answer is partial (and at which step), and the seconds it took.

    python bench/service_readme_example.py [--datastore DIR]   # -> bench/results/service_readme_example.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
QUESTION = "Does vitamin D improve bone density?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datastore", default=None, help="Datastore (default: settings' datastore.path).")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "service_readme_example.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="os-readme-"))
    env = {**os.environ, "OPENSCHOLAR_CACHE_DIR": str(tmp / "cache"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    if args.datastore:
        env["OPENSCHOLAR_DATASTORE__PATH"] = args.datastore
    key = subprocess.run([sys.executable, "-m", "cli", "keys", "create", "me"], env=env, cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp / "serve.log").open("wb")
    serve = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port)], env=env, cwd=REPO,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    report: dict[str, Any] = {"question": QUESTION, "load_before": os.getloadavg()}
    try:
        t0 = time.monotonic()
        while not _ready(url):
            if time.monotonic() - t0 > 600 or serve.poll() is not None:
                raise SystemExit(f"serve did not get ready: {(tmp / 'serve.log').read_text()[-2000:]}")
            time.sleep(1)
        report["ready_s"] = round(time.monotonic() - t0, 1)
        h = {"Authorization": f"Bearer {key}"}
        t1 = time.monotonic()
        first = httpx.post(url + "/v1/answer", json={"question": QUESTION, "options": {"feedback": True}},
                           headers=h, timeout=600)
        report["first_response"] = {"status": first.status_code, "seconds": round(time.monotonic() - t1, 1)}
        job_id = first.headers.get("X-Job-Id")
        job: dict[str, Any] = {}
        while job_id and time.monotonic() - t1 < args.timeout:
            job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=h, timeout=30).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(2)
        result = job.get("result") or {}
        report.update(status=job.get("status"), seconds=round(time.monotonic() - t1, 1), error=job.get("error"),
                      partial=result.get("partial"), partial_step=result.get("partial_step"),
                      timings_ms=result.get("timings"), text=result.get("text"),
                      references=len(result.get("references") or []), load_after=os.getloadavg())
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    sys.exit(0 if report.get("status") == "succeeded" else 1)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
