"""How long a 1,000-question batch takes to be accepted, and to reach the broker, per mode.

Starts an API in this process (uvicorn on loopback; no worker, so the broker's queue only grows),
POSTs one batch of N questions and measures (a) the HTTP round trip until 202 with the job ids
(target <= 2 s), (b) the time until all N messages are in the broker (handed over in the background).
Baseline in the same run: publishing N messages inline, as the API did before (each publish a
broker round trip; on the embedded SQLite broker a commit each).

    python bench/service_enqueue.py --questions 1000      # -> bench/results/service_enqueue.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "api"))


def broker_size(queue: str) -> int:
    from amqp.exceptions import ChannelError

    from api.celery_app import celery

    with celery.connection_for_write() as conn:
        try:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError:  # Redis: no list yet (nothing published)
            return 0


def run_mode(mode: str, n: int, redis_url: str) -> dict[str, Any]:
    from conftest import LiveServer

    from api.app import create_app
    from api.auth import KeyStore, keys_db_path
    from openscholar.settings import load_settings

    queue = f"enqueue-{uuid.uuid4().hex[:8]}"
    cache = tempfile.mkdtemp(prefix=f"os-enqueue-{mode}-")
    env = {"OPENSCHOLAR_CACHE_DIR": cache, "OPENSCHOLAR_SERVICE__QUEUE": queue, "OPENSCHOLAR_LLM__BACKEND": "scripted",
           "OPENSCHOLAR_SERVICE__JOB_TTL_S": "600"}
    if mode == "redis":
        env["OPENSCHOLAR_SERVICE__BROKER_URL"] = redis_url
    os.environ.update(env)
    settings = load_settings()
    key = KeyStore(keys_db_path(settings)).create("bench")
    server = LiveServer(create_app(settings, warm=False)).start()
    out: dict[str, Any] = {"mode": mode, "questions": n}
    try:
        c = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        qs = [f"Does intervention {i} reduce the risk of stroke in adults over 60?" for i in range(n)]
        t0 = time.perf_counter()
        resp = c.post("/v1/batches", json={"questions": qs, "options": {"feedback": False}})
        accepted = time.perf_counter() - t0
        assert resp.status_code == 202 and len(resp.json()["job_ids"]) == n, resp.text[:300]
        while broker_size(queue) < n and time.perf_counter() - t0 < 600:
            time.sleep(0.05)
        out.update(accept_s=round(accepted, 3), handed_over_s=round(time.perf_counter() - t0, 3),
                   in_broker=broker_size(queue))
        state = c.get(f"/v1/batches/{resp.json()['id']}").json()
        out["listed_jobs"] = len(state["jobs"])
        # Baseline: the same number of messages published inline, one apply_async each (as before).
        from api.tasks import answer_job

        ids = [f"job_baseline_{uuid.uuid4().hex}" for _ in range(n)]
        t1 = time.perf_counter()
        for jid in ids:
            answer_job.apply_async(args=[jid], task_id=jid)
        out["baseline_inline_publish_s"] = round(time.perf_counter() - t1, 3)
    finally:
        server.stop()
        if mode == "redis":
            import redis

            r = redis.Redis.from_url(redis_url)
            for k in r.scan_iter(f"*{queue}*"):
                r.delete(k)
            r.delete(queue)
        for k in env:
            os.environ.pop(k, None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--modes", default="embedded,redis")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "service_enqueue.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = [run_mode(mode, args.questions, args.redis) for mode in args.modes.split(",")]
    report = {"results": results, "load_before": load_before, "load_after": os.getloadavg(), "target_accept_s": 2.0}
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    sys.exit(0 if all(r["accept_s"] <= 2.0 and r["in_broker"] >= args.questions for r in results) else 1)


if __name__ == "__main__":
    main()
