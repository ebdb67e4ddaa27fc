"""Service reliability runs on loopback: workers killed mid-job, `serve` stopped mid-job, Redis restarted
mid-batch, LLM down. Prints and saves a fault table: fault, mode, jobs submitted, finished, lost.

Each scenario starts its own deployment (API via `openscholar serve`, `openscholar worker` processes,
the scripted LLM behind an OpenAI-compatible HTTP stub with a per-call delay) and stops it after.

  worker-kill    >= 50 jobs over W workers; every K seconds one worker is SIGKILLed whole (parent and
                 pool) while it runs a job, and restarted. Reports lost jobs (want 0) and takeovers.
  embedded-kill  (modes embedded, redis) `serve` with its embedded worker; a >= 50-question batch; every
                 K seconds the worker's MAIN process is SIGKILLed mid-job (serve must restart it).
  serve-restart  (modes embedded, redis) the same batch; every K seconds `serve` is SIGTERMed mid-job and
                 started again.
  redis-restart  a batch on a private redis-server (port 6390 by default, never the shared 6379) that is
                 shut down mid-batch for a while: every request meanwhile must get 503 (never 500), and the
                 batch must complete after Redis comes back.
  llm-down       the LLM endpoint is stopped: /v1/answer answers 503 with the endpoint's message; started
                 again, the same workers answer.

    python bench/service_reliability.py --jobs 50 --workers 3     # -> bench/results/service_reliability.json
"""

from __future__ import annotations

import argparse
import collections
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
sys.path.insert(0, str(REPO / "bench"))

from service_llm_stub import StubServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Deployment:
    """API + workers + LLM stub for one scenario."""

    def __init__(self, tmp: Path, broker: str | None, llm_delay: float, workers: int, datastore: str | None,
                 embedded: bool = False) -> None:
        self.tmp = tmp
        self.embedded = embedded
        self.stub_port = free_port()
        self.stub = StubServer(self.stub_port, llm_delay).start()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
                    "OPENSCHOLAR_CACHE_DIR": str(tmp / "cache"), "OPENSCHOLAR_LLM__BACKEND": "openai",
                    "OPENSCHOLAR_LLM__BASE_URL": f"http://127.0.0.1:{self.stub_port}/v1",
                    "OPENSCHOLAR_LLM__MAX_RETRIES": "0", "OPENSCHOLAR_RETRIEVAL__PIPELINE": "dense",
                    "OPENSCHOLAR_CITATIONS__JUDGE": "lexical",
                    "OPENSCHOLAR_SERVICE__QUEUE": f"rel-{os.getpid()}-{int(time.time())}",
                    "OPENSCHOLAR_SERVICE__JOB_LEASE_S": "4", "OPENSCHOLAR_SERVICE__VISIBILITY_TIMEOUT_S": "10",
                    "OPENSCHOLAR_SERVICE__WORKER_HEARTBEAT_S": "1", "OPENSCHOLAR_SERVICE__RECOVERY_INTERVAL_S": "1",
                    "OPENSCHOLAR_SERVICE__EMBEDDED_WORKER_STOP_S": "3",
                    "OPENSCHOLAR_SERVICE__RETRY_BACKOFF_S": "1", "OPENSCHOLAR_SERVICE__MAX_RETRIES": "2",
                    "OPENSCHOLAR_SERVICE__RATE_LIMIT_BURST": "1000000",
                    "OPENSCHOLAR_SERVICE__ANSWER_DEADLINE_S": "30"}
        if broker:
            self.env["OPENSCHOLAR_SERVICE__BROKER_URL"] = broker
        if datastore:
            self.env["OPENSCHOLAR_DATASTORE__PATH"] = datastore
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.n_workers = workers
        self.key = ""

    def cli(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        fh = (self.tmp / log).open("ab")
        return subprocess.Popen([sys.executable, "-m", "cli", *args], env=self.env, cwd=REPO,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)

    def start_worker(self, name: str) -> None:
        self.workers[name] = self.cli("worker", "-c", "1", "-n", f"{name}@%h", log=f"{name}.log")

    def wait_workers(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = [(self.tmp / f"{n}.log").read_text(errors="replace") for n in self.workers]
            if all(text.count("engine warm in") >= 1 for text in logs):
                return
            time.sleep(0.5)
        raise RuntimeError("workers did not warm up")

    def start(self) -> Deployment:
        proc = subprocess.run([sys.executable, "-m", "cli", "keys", "create", "bench"], env=self.env,
                              cwd=REPO, capture_output=True, text=True, check=True)
        self.key = proc.stdout.strip().splitlines()[-1]
        self.start_api()
        if not self.embedded:
            for i in range(self.n_workers):
                self.start_worker(f"w{i}")
            self.wait_workers()
        return self

    def start_api(self) -> None:
        """`serve` (with its embedded worker in the embedded scenarios); returns once /readyz is 200."""
        flag = "--embedded-worker" if self.embedded else "--no-embedded-worker"
        self.api = self.cli("serve", flag, "--port", str(self.port), "--log-level", "warning", log="api.log")
        deadline = time.monotonic() + 300
        path = "/readyz" if self.embedded else "/healthz"
        while True:
            try:
                if httpx.get(self.url + path, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.api.poll() is not None:
                raise RuntimeError(f"API did not start: {(self.tmp / 'api.log').read_text()[-2000:]}")
            time.sleep(0.5)

    def embedded_worker_pid(self) -> int:
        import re

        found = re.findall(r"started an embedded worker \(pid (\d+)\)|embedded worker restarted \(pid (\d+)",
                           (self.tmp / "api.log").read_text(errors="replace"))
        return int(next(p for p in found[-1] if p))

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60)

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.api]:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers.values(), self.api]:
            if proc is not None:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        self.stub.stop()


def wait_all(c: httpx.Client, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    final: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(final) < len(ids):
        for jid in ids:
            if jid in final:
                continue
            r = c.get(f"/v1/jobs/{jid}")
            if r.status_code == 200 and r.json()["status"] in ("succeeded", "failed", "cancelled"):
                final[jid] = r.json()
        time.sleep(0.5)
    return [final.get(j, {"id": j, "status": "unfinished"}) for j in ids]


def worker_kill(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    dep = Deployment(tmp, args.redis, args.llm_delay, args.workers, args.datastore).start()
    try:
        c = dep.client()
        t0 = time.monotonic()
        ids = [c.post("/v1/jobs", json={"question": f"Does intervention {i} reduce the risk of stroke?",
                                        "options": {"feedback": False}}).json()["id"] for i in range(args.jobs)]
        kills = 0
        next_kill = time.monotonic() + args.kill_every
        while time.monotonic() - t0 < args.timeout:
            states = collections.Counter(c.get(f"/v1/jobs/{j}").json()["status"] for j in ids)
            if states["queued"] + states["running"] == 0:
                break
            if time.monotonic() >= next_kill and kills < args.kills and states["running"] > 0:
                # With more queued jobs than workers, every live worker is in the middle of one.
                victim_name = list(dep.workers)[kills % len(dep.workers)]
                os.killpg(dep.workers[victim_name].pid, signal.SIGKILL)
                dep.workers[victim_name].wait(10)
                kills += 1
                dep.start_worker(victim_name)
                next_kill = time.monotonic() + args.kill_every
            time.sleep(0.5)
        finals = wait_all(c, ids, max(10.0, args.timeout - (time.monotonic() - t0)))
        statuses = collections.Counter(j["status"] for j in finals)
        return {"jobs": len(ids), "workers": args.workers, "kills": kills, "statuses": dict(statuses),
                "lost": len(ids) - statuses["succeeded"],
                "taken_over": sum(1 for j in finals if j.get("attempts", 0) >= 2),
                "seconds": round(time.monotonic() - t0, 1)}
    finally:
        dep.stop()


def _batch_states(c: httpx.Client, batch_id: str) -> collections.Counter[str]:
    try:
        resp = c.get(f"/v1/batches/{batch_id}")
    except httpx.HTTPError:
        return collections.Counter({"unreachable": 1})
    if resp.status_code != 200:
        return collections.Counter({f"http{resp.status_code}": 1})
    return collections.Counter(j["status"] for j in resp.json()["jobs"])


def _fault_batch(args: argparse.Namespace, tmp: Path, mode: str, fault: str) -> dict[str, Any]:
    """`serve` with its embedded worker (embedded SQLite or Redis broker); a batch of args.jobs questions;
    every args.kill_every s, while a job runs: SIGKILL the worker's main process (embedded-kill), or
    SIGTERM `serve` and start it again (serve-restart)."""
    broker = None if mode == "embedded" else args.redis
    dep = Deployment(tmp, broker, args.llm_delay, 1, args.datastore, embedded=True).start()
    try:
        c = dep.client()
        t0 = time.monotonic()
        qs = [f"Does intervention {i} reduce the risk of stroke?" for i in range(args.jobs)]
        batch = c.post("/v1/batches", json={"questions": qs, "options": {"feedback": False}}).json()
        faults, next_fault = 0, time.monotonic() + args.kill_every
        states: collections.Counter[str] = collections.Counter()
        while time.monotonic() - t0 < args.timeout:
            states = _batch_states(c, batch["id"])
            if states and states["queued"] + states["running"] == 0 and not any(k.startswith(("http", "unr"))
                                                                              for k in states):
                break
            if time.monotonic() >= next_fault and faults < args.kills and states["running"] > 0:
                faults += 1
                if fault == "embedded-kill":
                    os.kill(dep.embedded_worker_pid(), signal.SIGKILL)
                else:
                    assert dep.api is not None
                    os.kill(dep.api.pid, signal.SIGTERM)
                    dep.api.wait(60)
                    dep.start_api()
                    c = dep.client()
                next_fault = time.monotonic() + args.kill_every
            time.sleep(0.5)
        finished = states["succeeded"]
        return {"fault": fault, "mode": mode, "submitted": len(qs), "finished": finished, "lost": len(qs) - finished,
                "faults": faults, "statuses": dict(states), "seconds": round(time.monotonic() - t0, 1)}
    finally:
        dep.stop()


def embedded_kill(args: argparse.Namespace, tmp: Path, mode: str) -> dict[str, Any]:
    return _fault_batch(args, tmp, mode, "embedded-kill")


def serve_restart(args: argparse.Namespace, tmp: Path, mode: str) -> dict[str, Any]:
    return _fault_batch(args, tmp, mode, "serve-restart")


def redis_restart(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    port = args.private_redis_port
    if port == 6379:
        raise SystemExit("never restart the shared Redis: pick another --private-redis-port")
    data = tmp / "redis"
    data.mkdir()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--appendonly", "yes",
           "--appendfsync", "always", "--save", ""]
    redis = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    dep = Deployment(tmp, f"redis://127.0.0.1:{port}/0", args.llm_delay, args.workers, args.datastore).start()
    probes: collections.Counter[int] = collections.Counter()
    try:
        c = dep.client()
        qs = [f"Is obesity {i} linked to type 2 diabetes?" for i in range(args.batch)]
        batch = c.post("/v1/batches", json={"questions": qs, "options": {"feedback": False}}).json()
        t0 = time.monotonic()
        time.sleep(args.down_after)
        subprocess.run(["redis-cli", "-p", str(port), "shutdown"], capture_output=True, check=False)
        redis.wait(10)
        down_until = time.monotonic() + args.down_for
        while time.monotonic() < down_until:
            for method, path, body in (("POST", "/v1/jobs", {"question": "q?"}), ("GET", f"/v1/batches/{batch['id']}", None),
                                       ("GET", f"/v1/batches/{batch['id']}/results", None)):
                try:
                    probes[c.request(method, path, json=body).status_code] += 1
                except httpx.HTTPError:
                    probes[-1] += 1
            time.sleep(0.2)
        redis = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        state: dict[str, Any] = {}
        after: collections.Counter[int] = collections.Counter()
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            r = c.get(f"/v1/batches/{batch['id']}")
            after[r.status_code] += 1
            if r.status_code == 200 and (state := r.json())["done"]:
                break
            time.sleep(0.5)
        return {"batch": args.batch, "down_s": args.down_for, "probe_statuses_while_down": dict(probes),
                "statuses_after": dict(after), "final_counts": state.get("counts"),
                "completed": bool(state.get("done")) and state["counts"]["succeeded"] == args.batch,
                "server_errors": sum(v for k, v in (probes + after).items() if k >= 500 and k != 503),
                "seconds": round(time.monotonic() - t0, 1)}
    finally:
        dep.stop()
        redis.terminate()
        redis.wait(10)


def llm_down(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    dep = Deployment(tmp, args.redis, 0.0, 1, args.datastore).start()
    try:
        c = dep.client()
        dep.stub.stop()
        t = time.perf_counter()
        down = c.post("/v1/answer", json={"question": "Does aspirin prevent stroke?", "options": {"feedback": False}})
        down_s = time.perf_counter() - t
        dep.stub = StubServer(dep.stub_port, 0.0).start()
        up = c.post("/v1/answer", json={"question": "Does aspirin prevent stroke?", "options": {"feedback": False}})
        return {"while_down": {"status": down.status_code, "message": down.json().get("message"),
                               "seconds": round(down_s, 2)},
                "after": {"status": up.status_code, "references": len(up.json().get("references", []))}}
    finally:
        dep.stop()


def fault_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per fault run: fault, mode, jobs submitted, finished, lost."""
    rows = []
    for name, r in report.items():
        if "submitted" in r:
            rows.append({k: r[k] for k in ("fault", "mode", "submitted", "finished", "lost")})
        elif name == "worker-kill":
            rows.append({"fault": "worker-kill (whole worker, standalone workers)", "mode": "redis",
                         "submitted": r["jobs"], "finished": r["jobs"] - r["lost"], "lost": r["lost"]})
        elif name == "redis-restart":
            done = (r.get("final_counts") or {}).get("succeeded", 0)
            rows.append({"fault": "redis-restart", "mode": "redis", "submitted": r["batch"], "finished": done,
                         "lost": r["batch"] - done})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="embedded-kill,serve-restart,worker-kill,redis-restart,llm-down")
    parser.add_argument("--modes", default="embedded,redis", help="Modes of embedded-kill and serve-restart.")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13", help="Broker for the Redis-mode scenarios.")
    parser.add_argument("--private-redis-port", type=int, default=6390)
    parser.add_argument("--datastore", default=None, help="Datastore (default: settings' datastore.path).")
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--llm-delay", type=float, default=0.5, help="Seconds per LLM call.")
    parser.add_argument("--kill-every", type=float, default=6.0)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--batch", type=int, default=30)
    parser.add_argument("--down-after", type=float, default=4.0)
    parser.add_argument("--down-for", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "service_reliability.json")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    runs: list[tuple[str, Any]] = []
    for name in args.scenarios.split(","):
        if name in ("embedded-kill", "serve-restart"):
            fn = embedded_kill if name == "embedded-kill" else serve_restart
            runs += [(f"{name}/{mode}", lambda a, t, fn=fn, mode=mode: fn(a, t, mode)) for mode in args.modes.split(",")]
        else:
            runs.append((name, {"worker-kill": worker_kill, "redis-restart": redis_restart, "llm-down": llm_down}[name]))
    for name, fn in runs:
        with tempfile.TemporaryDirectory(prefix=f"os-{name.replace('/', '-')}-") as tmp:
            report[name] = fn(args, Path(tmp))
            print(json.dumps({name: report[name]}, indent=2), flush=True)
    table = fault_table(report)
    print("\n| fault | mode | jobs submitted | finished | lost |\n|---|---|---|---|---|")
    for row in table:
        print(f"| {row['fault']} | {row['mode']} | {row['submitted']} | {row['finished']} | {row['lost']} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"fault_table": table, "runs": report, "args": vars(args) | {"out": str(args.out)},
                                        "load": os.getloadavg()}, indent=2, default=str))
    ok = (all(row["lost"] == 0 for row in table)
          and report.get("redis-restart", {}).get("server_errors", 0) == 0
          and report.get("llm-down", {}).get("while_down", {}).get("status", 503) == 503)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
