"""`datastore build --workers celery`: the same small corpus built by 1 and by 2 Celery workers (CPU).

The first ``--papers`` SciFact papers (BEIR layout, in a scratch directory) are built

- once in this process (`DatastoreBuilder`, the local build: the reference the Celery builds must equal),
- by one `openscholar worker --queues build --pool solo` process (queue A),
- by two such processes (queue B),

alternating 1- and 2-worker builds for ``--rounds`` rounds so that the machine's load hits both alike.
Every process embeds with one torch thread (``embedder.threads=1``), so two workers can use at most
two cores. Workers load their embedder before they report ready, so the times are builds, not model
loads. Reported per build: wall time (plan + parts + finalize), the parts phase, the load average
before and after, and each worker's passages/s over its busy time; the headline is the ratio of the
1-worker to the 2-worker wall time (medians over rounds). Each Celery build is checked to be the
local build file for file (sha256 of every part and index file).

No GPU is used or claimed: the GPU section states whether torch sees one here and, when not, gives
a projection from published figures, labelled as such. Prints a table and writes
bench/results/dist_build.json.

    nice -n 15 .venv/bin/python bench/dist_build.py [--papers 200] [--part-papers 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "data" / "beir" / "scifact"
WHEN = {"mtime_ns", "created_at", "updated_at", "checksum"}

# Published encoding speed of all-MiniLM-L6-v2 (the default embedder) and all-mpnet-base-v2 (a
# BERT-base-sized 768-d encoder, the size of the reference's contriever), sentences/s on one V100 GPU:
# the "Speed" column of https://sbert.net/docs/sentence_transformer/pretrained_models.html. Those are
# sentences (tens of tokens), not 256-word passages: the projection scales them by tokens.
PUBLISHED_V100_SENTENCES_PER_S = {"all-MiniLM-L6-v2": 14_200, "all-mpnet-base-v2": 2_800}
PUBLISHED_SENTENCE_TOKENS = 20  # assumption: a typical STS/NLI sentence; stated with the projection
FULL_CORPUS = 237_000_000


@contextmanager
def environ(env: dict[str, str]) -> Any:
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


class Worker:
    """An `openscholar worker --queues build --pool solo` subprocess on its own build queue."""

    def __init__(self, env: dict[str, str], queue: str, log: Path, name: str) -> None:
        self.log = log
        self.env = {**os.environ, **env, "OPENSCHOLAR_SERVICE__BUILD_QUEUE": queue, "PYTHONPATH": str(REPO),
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                    "OMP_NUM_THREADS": "1"}
        self.cmd = [sys.executable, "-m", "cli", "worker", "--queues", "build", "--pool", "solo", "-n",
                    f"{name}@%h", "--log-level", "INFO"]
        self.fh = log.open("ab")
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=self.env, stdout=self.fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-2000:]}")
            if " ready." in self.log.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"worker not ready: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.fh.close()


def fingerprint(root: Path) -> dict[str, Any]:
    """sha256 of every data file, JSON files less their timestamps (see tests/api/test_build_workers.py)."""

    def strip(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in WHEN}
        return [strip(v) for v in d] if isinstance(d, list) else d

    out: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel != ".lock" and not rel.startswith("sparse/"):
            out[rel] = strip(json.loads(path.read_text())) if path.suffix == ".json" else \
                hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def celery_build(settings: Any, config: Any, encoder: Any, corpus: Path, root: Path) -> dict[str, Any]:
    from api.build_coordinator import CeleryDatastoreBuilder

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    builder = CeleryDatastoreBuilder(encoder, config, settings, progress=False, timeout_s=3600)
    report = builder.build([str(corpus)], root)
    wall = time.perf_counter() - t0
    workers = {}
    for name, w in builder.stats.workers.items():
        busy = w.seconds - w.load_s
        workers[name] = {"device": w.device, "parts": w.parts, "passages": w.passages, "busy_s": round(busy, 2),
                         "passages_per_s": round(w.passages / busy, 2) if busy > 0 else None}
    return {
        "wall_s": round(wall, 2),
        "parts_s": round(builder.stats.seconds, 2),
        "passages": report.manifest.passages if report.manifest else None,
        "resent": builder.stats.resent,
        "workers": workers,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def gpu_section(cpu_worker_rate: float | None, mean_tokens: float) -> dict[str, Any]:
    """Whether a GPU was measured (never, without one) and a projection from published figures."""
    import torch

    section: dict[str, Any] = {"cuda_available": bool(torch.cuda.is_available())}
    if torch.cuda.is_available():
        section["statement"] = ("torch sees a GPU here, but this benchmark ran its workers with embedder.device as "
                                "configured; see the rows' device field")
    else:
        section["statement"] = ("No GPU on this machine: no GPU worker was measured. The figures below are a "
                                "PROJECTION from published numbers, not a measurement.")
    projections = {}
    for model, sentences in PUBLISHED_V100_SENTENCES_PER_S.items():
        passages = sentences * PUBLISHED_SENTENCE_TOKENS / mean_tokens  # same tokens/s, longer inputs
        projections[model] = {
            "published_v100_sentences_per_s": sentences,
            "projected_v100_passages_per_s": round(passages),
            "projected_days_for_237M_on_one_v100": round(FULL_CORPUS / passages / 86400, 1),
            "vs_cpu_worker_measured_here_under_load": round(passages / cpu_worker_rate, 1) if cpu_worker_rate else None,
        }
    section["projection"] = {
        "label": "PROJECTION (not measured): published V100 sentence rates scaled to passage length by tokens",
        "source": "https://sbert.net/docs/sentence_transformer/pretrained_models.html (Speed column, V100)",
        "assumed_tokens_per_published_sentence": PUBLISHED_SENTENCE_TOKENS,
        "passage_tokens": round(mean_tokens, 1),
        "models": projections,
        "caveat": "attention cost grows faster than linearly with length, so the passage rates are optimistic; "
                  "a GPU worker also needs its CPU to chunk and tokenize and storage to keep up",
    }
    return section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--papers", type=int, default=200)
    ap.add_argument("--part-papers", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--workdir", default=None, help="Scratch directory (default: a temporary one, deleted).")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "dist_build.json"))
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="dist-build-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus"
    corpus.mkdir(exist_ok=True)
    lines = (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[: args.papers]
    (corpus / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tag = uuid.uuid4().hex[:8]
    env = {
        "OPENSCHOLAR_CACHE_DIR": str(work / "cache"),
        "OPENSCHOLAR_SERVICE__BROKER_URL": args.redis,
        "OPENSCHOLAR_SERVICE__QUEUE": f"dsbench-answers-{tag}",
        "OPENSCHOLAR_SERVICE__JOB_TTL_S": "3600",
        "OPENSCHOLAR_EMBEDDER__THREADS": "1",
        "OPENSCHOLAR_DATASTORE__PART_PAPERS": str(args.part_papers),
    }
    queues = {1: f"dsbench-1w-{tag}", 2: f"dsbench-2w-{tag}"}
    workers = [Worker(env, queues[1], work / "w1a.log", f"bench1a-{tag}"),
               Worker(env, queues[2], work / "w2a.log", f"bench2a-{tag}"),
               Worker(env, queues[2], work / "w2b.log", f"bench2b-{tag}")]
    result: dict[str, Any] = {}
    try:
        with environ(env):
            from datastore.builder import DatastoreBuilder
            from openscholar.settings import load_settings
            from retriever.st_embedder import SentenceTransformerEmbedder

            settings = load_settings()
            config = settings.datastore
            encoder = SentenceTransformerEmbedder(settings.embedder).warm_up()
            lengths = encoder.count_tokens([json.loads(x)["title"] + " " + json.loads(x)["text"] for x in lines])
            mean_tokens = min(statistics.mean(lengths), encoder.max_tokens)
            load_before = os.getloadavg()
            t0 = time.perf_counter()
            local = DatastoreBuilder(encoder, config, progress=False).build([str(corpus)], work / "local")
            local_s = time.perf_counter() - t0
            reference = fingerprint(work / "local")
            result["local"] = {"wall_s": round(local_s, 2), "passages": local.manifest.passages if local.manifest else None,
                               "passages_per_s": round((local.manifest.passages if local.manifest else 0) / local_s, 2),
                               "loadavg_before": [round(x, 2) for x in load_before],
                               "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
            print(f"local build: {local_s:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
            for w in workers:
                w.wait_ready()
            runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
            for r in range(args.rounds):
                for n in ((1, 2) if r % 2 == 0 else (2, 1)):
                    s = settings.model_copy(update={"service": settings.service.model_copy(
                        update={"build_queue": queues[n]})})
                    root = work / f"celery-{n}w-r{r}"
                    row = celery_build(s, config, encoder, corpus, root)
                    row["identical_to_local"] = fingerprint(root) == reference
                    runs[n].append(row)
                    print(f"round {r}, {n} worker(s): {row['wall_s']:.1f} s, load {row['loadavg_after'][0]:.1f}, "
                          f"identical to local: {row['identical_to_local']}", flush=True)
                    shutil.rmtree(root)
    finally:
        for w in workers:
            w.stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    med = {n: round(statistics.median(r["wall_s"] for r in rows), 2) for n, rows in runs.items()}
    rates = [w["passages_per_s"] for row in runs[1] for w in row["workers"].values() if w["passages_per_s"]]
    cpu_rate = statistics.median(rates) if rates else None
    result.update({
        "corpus": f"first {args.papers} SciFact papers (BEIR corpus.jsonl), {args.part_papers} papers per part",
        "parts": -(-args.papers // args.part_papers),
        "rounds": args.rounds,
        "builds": {f"{n}_worker{'s' if n > 1 else ''}": rows for n, rows in runs.items()},
        "median_wall_s": {"1_worker": med[1], "2_workers": med[2]},
        "speedup_2_vs_1": round(med[1] / med[2], 2),
        "median_cpu_worker_passages_per_s": cpu_rate,
        "all_identical_to_local": all(r["identical_to_local"] for rows in runs.values() for r in rows),
        "gpu": gpu_section(cpu_rate, mean_tokens),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "command": "nice -n 15 .venv/bin/python bench/dist_build.py " + " ".join(sys.argv[1:]),
    })
    print()
    print("| build | wall s (median) | ratio to 1 worker | per-worker passages/s | load avg (1 min, after) |")
    print("|---|---|---|---|---|")
    print(f"| local (in process) | {result['local']['wall_s']} | - | {result['local']['passages_per_s']} | "
          f"{result['local']['loadavg_after'][0]} |")
    for n in (1, 2):
        per = [w["passages_per_s"] for row in runs[n] for w in row["workers"].values()]
        loads = [row["loadavg_after"][0] for row in runs[n]]
        print(f"| celery, {n} worker{'s' if n > 1 else ''} | {med[n]} | {med[1] / med[n]:.2f} | "
              f"{', '.join(str(p) for p in per)} | {', '.join(str(x) for x in loads)} |")
    print(f"\nall Celery builds identical to the local build: {result['all_identical_to_local']}")
    print(result["gpu"]["statement"])
    for model, p in result["gpu"]["projection"]["models"].items():
        print(f"  PROJECTION {model}: ~{p['projected_v100_passages_per_s']} passages/s per V100 "
              f"(~{p['vs_cpu_worker_measured_here_under_load']}x a 1-thread CPU worker under this run's load), ~{p['projected_days_for_237M_on_one_v100']} "
              "days for 237M passages on one V100")
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
