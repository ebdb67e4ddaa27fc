"""Load and soak of /v1/search: throughput, p50/p99, ratio to in-process retrieval, memory growth.

Starts `openscholar serve` (no worker: search runs in the API process) on a loopback port, then:
1. in-process: Engine.search at the same concurrency (the baseline), and at concurrency 1;
2. HTTP: /v1/search at concurrency C for D seconds (keep-alive clients, one per thread);
3. soak: S seconds more at concurrency C, sampling the server's RSS; growth = last / first sample.

    python bench/service_load.py --concurrency 16 --duration 60 --soak 300 --out /tmp/load.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
QUERIES = REPO.parent / "shared" / "data" / "beir" / "scifact" / "queries.jsonl"


def queries() -> list[str]:
    if QUERIES.is_file():
        qs = [json.loads(line)["text"] for line in QUERIES.read_text().splitlines() if line.strip()]
    else:
        qs = [f"does protein {i} regulate cell growth in mice" for i in range(200)]
    random.Random(0).shuffle(qs)
    return qs


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def summary(lat: list[float], seconds: float) -> dict[str, float]:
    return {"requests": len(lat), "throughput_rps": round(len(lat) / seconds, 2),
            "p50_ms": round(pct(lat, 0.5) * 1000, 2), "p99_ms": round(pct(lat, 0.99) * 1000, 2),
            "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else float("nan")}


def run_threads(fn: Any, concurrency: int, seconds: float, qs: list[str]) -> tuple[list[float], int]:
    """Call fn(query) from ``concurrency`` threads for ``seconds``; latencies and error count."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop(offset: int) -> None:
        state: dict[str, Any] = {}
        i = offset
        while time.monotonic() < stop:
            q = qs[i % len(qs)]
            i += concurrency
            t = time.perf_counter()
            ok = fn(q, state)
            dt = time.perf_counter() - t
            with lock:
                if ok:
                    lat.append(dt)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--soak", type=float, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--pipeline", default="dense", help="retrieval.pipeline for both sides.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from api.auth import KeyStore
    from openscholar.engine import Engine
    from openscholar.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="os-load-"))
    env = {**os.environ, "OPENSCHOLAR_RETRIEVAL__PIPELINE": args.pipeline,
           "OPENSCHOLAR_SERVICE__KEYS_DB": str(tmp / "keys.sqlite"),
           "OPENSCHOLAR_SERVICE__RATE_LIMIT_PER_MINUTE": "10000000", "OPENSCHOLAR_SERVICE__RATE_LIMIT_BURST": "1000000",
           "OPENSCHOLAR_CACHE_DIR": str(tmp / "cache"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    os.environ.update({k: v for k, v in env.items() if k.startswith("OPENSCHOLAR_")})
    settings = load_settings()
    key = KeyStore(tmp / "keys.sqlite").create("load")
    qs = queries()
    report: dict[str, Any] = {"concurrency": args.concurrency, "duration_s": args.duration, "k": args.k,
                              "pipeline": args.pipeline, "datastore": str(settings.datastore_path), "cpus": os.cpu_count()}

    # 1. In-process baseline.
    engine = Engine.from_settings(settings)
    engine.search("warm up", args.k)

    def direct(q: str, _: dict) -> bool:
        engine.search(q, args.k)
        return True

    lat1, _ = run_threads(direct, 1, min(20.0, args.duration), qs)
    report["in_process_c1"] = summary(lat1, min(20.0, args.duration))
    latc, _ = run_threads(direct, args.concurrency, args.duration, qs)
    report["in_process"] = summary(latc, args.duration)
    engine = None  # free the in-process models before the server loads its own
    print(json.dumps(report, indent=2), flush=True)

    # 2. HTTP.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--no-embedded-worker", "--port",
                               str(port), "--log-level", "warning"], env=env, cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.5)

        def over_http(q: str, state: dict) -> bool:
            client = state.get("c") or state.setdefault(
                "c", httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60))
            return client.post("/v1/search", json={"query": q[:2000], "k": args.k}).status_code == 200

        run_threads(over_http, args.concurrency, 5, qs)  # warm-up
        lat1h, _ = run_threads(over_http, 1, min(20.0, args.duration), qs)
        report["http_c1"] = summary(lat1h, min(20.0, args.duration))
        lath, errs = run_threads(over_http, args.concurrency, args.duration, qs)
        report["http"] = {**summary(lath, args.duration), "errors": errs}
        report["ratio_p50_http_to_in_process"] = round(report["http"]["p50_ms"] / report["in_process"]["p50_ms"], 3)
        report["ratio_p50_c1"] = round(report["http_c1"]["p50_ms"] / report["in_process_c1"]["p50_ms"], 3)
        report["ratio_throughput_in_process_to_http"] = round(
            report["in_process"]["throughput_rps"] / report["http"]["throughput_rps"], 3)
        print(json.dumps(report, indent=2), flush=True)

        # 3. Soak with memory samples.
        if args.soak > 0:
            samples: list[tuple[float, float]] = []
            done = threading.Event()

            def sample() -> None:
                t0 = time.monotonic()
                while not done.wait(10):
                    samples.append((round(time.monotonic() - t0, 1), round(rss_mb(server.pid), 1)))

            sampler = threading.Thread(target=sample)
            start_rss = rss_mb(server.pid)
            sampler.start()
            lats, errs = run_threads(over_http, args.concurrency, args.soak, qs)
            done.set()
            sampler.join()
            first = samples[0][1] if samples else start_rss
            report["soak"] = {**summary(lats, args.soak), "errors": errs, "rss_mb_start": round(start_rss, 1),
                              "rss_mb_first_sample": first, "rss_mb_end": samples[-1][1] if samples else None,
                              "rss_growth_pct": round(100 * (samples[-1][1] - first) / first, 2) if samples else None,
                              "samples": samples}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    print(json.dumps(report, indent=2), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
