"""Scale simulation: synthetic release -> `import-openscholar` -> serve; what it costs per passage.

    nice -n 15 .venv/bin/python bench/scale_sim.py --n 1000000 --work /work/tmp-x/sim [--keep]

Steps (each product step runs as its own process, as a user would run it):

1. write a synthetic release in the reference's layout (bench/synthetic_release.py; reused when
   present with the same N);
2. baseline: read the release without writing anything (scan every pickle's opcodes, stream every
   passage line, read every vector row): the import's throughput is reported as a ratio to it;
3. ``openscholar datastore import-openscholar SRC --out DS --trust-pickles --papers PES2O``
   (parts), then the same with ``--finish --index ivfpq`` (global index), then the sparse index the
   hybrid pipeline uses (``refresh_derived_indexes``; ``auto``: Lucene from 250k passages). Peak RSS
   of each process is sampled from /proc/<pid>/smaps_rollup every 0.2 s, anonymous (heap: what
   the process really owns) apart from file-backed (mapped files: page cache the kernel can drop);
4. serve (a fresh process pinned to one core, FAISS on one thread): dense search of the raw vector
   index, the dense and hybrid pipelines of the product's `Retriever` (dense + sparse + RRF, passage
   fetch), p50/p99 per single query; resident memory after the queries; recall@10 of the dense
   index against exact inner-product search over every stored vector; exact search's own single-
   query latency is the baseline of the latency ratio.

Queries: 300 stored passages picked at random; the dense query is the passage's vector plus noise
of the per-passage noise's size, the text query a 12-word window of the passage (no query encoder
runs: the release's contriever is not available offline, and its cost does not depend on N).

Writes bench/results/scale_sim_<N>.json and prints a table; the load average is recorded at each step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def smaps(pid: int | str = "self") -> dict[str, int]:
    """Rss / Anonymous / file-backed bytes of a process (from smaps_rollup)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        return {}
    rss, anon = out.get("Rss", 0), out.get("Anonymous", 0)
    return {"rss": rss, "anon": anon, "file": rss - anon - out.get("Shmem", 0) if "Shmem" in out else rss - anon}


def status_rss(pid: int) -> dict[str, int]:
    """Rss / anonymous / file-backed bytes from /proc/<pid>/status: counters, O(1) to read, where
    smaps_rollup walks every mapping (a sampler reading it 5 times a second cost ~0.6 of a core while
    finalize mapped 13 GB of vectors at 10M)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "RssAnon:", "RssFile:")):
                    key, value, _ = line.split()
                    out[key.rstrip(":")] = int(value) * 1024
    except OSError:
        return {}
    return {"rss": out.get("VmRSS", 0), "anon": out.get("RssAnon", 0), "file": out.get("RssFile", 0)}


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a JVM or worker started by the command counts too)."""
    pids = [pid]
    try:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            pids += _tree(int(child))
    except OSError:
        pass
    return pids


def run_measured(cmd: list[str] | list[list[str]], env: dict[str, str], label: str) -> dict[str, Any]:
    """Run ``cmd`` (or several commands at once); wall time and peak RSS (anon / file-backed, summed
    over every process tree)."""
    cmds = cmd if cmd and isinstance(cmd[0], list) else [cmd]
    t0 = time.perf_counter()
    load0 = load()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for c in cmds]
    peak = {"rss": 0, "anon": 0, "file": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            tot = {"rss": 0, "anon": 0, "file": 0}
            for proc in procs:
                for p in _tree(proc.pid):
                    for k, v in status_rss(p).items():
                        tot[k] += v
            for k, v in tot.items():
                peak[k] = max(peak[k], v)
            stop.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    outs = [proc.communicate() for proc in procs]
    stop.set()
    thread.join()
    seconds = time.perf_counter() - t0
    stdout = "\n".join(o for o, _ in outs)
    stderr = "\n".join(e for _, e in outs)
    for proc in procs:
        if proc.returncode != 0:
            sys.stderr.write(stderr[-5000:])
            raise SystemExit(f"{label} failed (exit {proc.returncode})")
    print(f"[{label}] {seconds:.0f}s, peak anon {peak['anon'] / 1e6:.0f} MB, file {peak['file'] / 1e6:.0f} MB, "
          f"load {load0} -> {load()}", file=sys.stderr)
    return {"seconds": round(seconds, 1), "peak": peak, "load_before": load0, "load_after": load(),
            "stdout": stdout, "stderr_tail": stderr[-2000:]}


def _json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects printed one after another (one per importer process)."""
    dec, out, i = json.JSONDecoder(), [], 0
    while True:
        i = text.find("{", i)
        if i < 0:
            return out
        obj, i = dec.raw_decode(text, i)
        out.append(obj)


def _merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    shards = sorted((s for r in reports for s in r["shards"]), key=lambda s: s["shard"])
    return {"imported": sum(r["imported"] for r in reports), "shards": shards, "join": reports[0]["join"]}


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def read_baseline(src: Path, shards: list[int] | None = None) -> dict[str, Any]:
    """Read everything the import reads, write nothing: the ceiling of the import's throughput."""
    from datastore.importer import _read_rows
    from datastore.release import Alignment, discover_release, iter_passages, open_vectors

    t0 = time.perf_counter()
    n = 0
    for shard in discover_release(src, "pickle", shards):
        vec = open_vectors(shard, trust_pickles=True)
        align = Alignment(vec.ids)
        for batch in iter_passages(shard, 8192):
            rows, _ = align.rows(batch.ids)
            keep = rows[rows >= 0]
            if len(keep):
                _read_rows(vec.vectors, keep)
            n += len(keep)
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 1), "passages": n, "passages_per_s": round(n / seconds, 1)}


# -- serving (runs in its own process: --serve DS) -------------------------------------------------

class PrecomputedQueries:
    """The query encoder's place, holding vectors made beforehand (the release's encoder is not offline)."""

    def __init__(self, model_id: str, dim: int, table: dict[str, np.ndarray]) -> None:
        self.model_id = model_id
        self.dim = dim
        self.pooling = "mean"
        self.normalized = False
        self.table = table

    def encode_queries(self, texts: list[str]) -> Any:
        from retriever.protocols import QueryVectors

        return QueryVectors(np.stack([self.table[t] for t in texts]).astype(np.float32))


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2)}


def _exact_topk(root: Path, ds: Any, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-k over every live stored vector (blocks of the parts' fp16 files)."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    for part in ds.manifest.parts:
        vec = np.load(root / "parts" / part.name / "vectors.f16.npy", mmap_mode="r")
        for a in range(0, len(vec), 65536):
            block = np.asarray(vec[a : a + 65536], dtype=np.float32)
            ids = np.arange(part.start + a, part.start + a + len(block))
            scores = queries @ block.T
            dead = ds.is_deleted(ids)
            scores[:, dead] = -np.inf
            cat_s = np.concatenate([best_s, scores], axis=1)
            cat_i = np.concatenate([best_i, np.broadcast_to(ids, scores.shape)], axis=1)
            top = np.argpartition(-cat_s, k, axis=1)[:, :k]
            best_s = np.take_along_axis(cat_s, top, 1)
            best_i = np.take_along_axis(cat_i, top, 1)
    return best_i


def serve(root: Path, n_queries: int, seed: int = 1, mode: str = "both", sweep: str = "") -> dict[str, Any]:
    """Open the imported datastore as the service does and time single queries on one core.

    ``mode``: dense (no sparse index opened; recall against exact search), hybrid (with the sparse
    index, no exact search), both. ``sweep`` ("NPROBES:RESCORES", IVF-PQ, not in hybrid mode): after
    the configured setting, recall@10 and p50/p99 of the raw dense search for each pair.
    """
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    import faiss

    from datastore.datastore import Datastore
    from openscholar.settings import load_settings
    from retriever.dense import DenseRetriever
    from retriever.facade import Retriever
    from retriever.sparse import open_sparse

    faiss.omp_set_num_threads(1)
    settings = load_settings()
    # what a serving process holds whatever the datastore's size: torch (the query encoder; exact
    # re-scoring uses it too) and the sparse backends' libraries. Loaded before the baseline so that
    # bytes per passage count only what grows with the datastore.
    import bm25s  # noqa: F401
    import torch  # noqa: F401
    base = smaps()
    t = time.perf_counter()
    ds = Datastore.open(root, config=settings.datastore)
    open_s = time.perf_counter() - t
    after_open = smaps()
    t = time.perf_counter()
    sparse = open_sparse(ds, settings.retrieval.sparse, build=False) if mode != "dense" else None
    sparse_open_s = time.perf_counter() - t
    after_sparse = smaps()
    # Lucene's warm-up queries at open (sparse.lucene_warmup_queries): their first and last 25
    # show what the JIT does to a query's time in this same process.
    warm = getattr(sparse, "warmup_ms", None) or []
    warmup = {"queries": len(warm), "open_s": round(sparse_open_s, 2),
              **({"first_25_p50_ms": round(float(np.median(warm[:25])), 2),
                  "last_25_p50_ms": round(float(np.median(warm[-25:])), 2)} if len(warm) >= 50 else {})}
    rng = np.random.default_rng(seed)
    n = ds.next_id
    picks = [int(i) for i in rng.choice(n, size=min(n, n_queries * 2), replace=False) if not ds.is_deleted(np.asarray([i]))[0]][:n_queries]
    passages = ds.get(picks)
    vecs = ds.vectors(picks)
    noise_scale = 0.45 / np.sqrt(ds.dim)  # the synthetic per-passage noise (bench/synthetic_release.py)
    qvecs = (vecs + rng.standard_normal(vecs.shape).astype(np.float32) * noise_scale).astype(np.float32)
    texts = []
    for p in passages:
        words = p.text.split()
        a = int(rng.integers(0, max(1, len(words) - 12)))
        texts.append(" ".join(words[a : a + 12]) + f" ~{len(texts)}")  # unique key per query
    table = {t: v for t, v in zip(texts, qvecs, strict=True)}
    enc = PrecomputedQueries(ds.encoder_id, ds.dim, table)
    cfg = settings.retrieval
    dense_only = Retriever(cfg, dense=DenseRetriever(ds, enc))
    hybrid = Retriever(cfg, dense=DenseRetriever(ds, enc), sparse=sparse) if sparse is not None else None
    for i in range(10):  # warm-up
        ds.search(qvecs[i : i + 1], 10)
        (hybrid or dense_only).retrieve(texts[i], 10)
    raw_ms, dense_ms, hybrid_ms, sparse_ms = [], [], [], []
    raw_ids = np.zeros((len(qvecs), 10), dtype=np.int64)
    for i in range(len(qvecs)):
        t = time.perf_counter()
        _, ids = ds.search(qvecs[i : i + 1], 10)
        raw_ms.append((time.perf_counter() - t) * 1000)
        raw_ids[i] = ids[0]
        t = time.perf_counter()
        dense_only.retrieve(texts[i], 10)
        dense_ms.append((time.perf_counter() - t) * 1000)
        if hybrid is not None:
            t = time.perf_counter()
            r = hybrid.retrieve(texts[i], 10)
            hybrid_ms.append((time.perf_counter() - t) * 1000)
            sparse_ms.append(r.timings.get("sparse_ms", 0.0))
    served = smaps()
    recall, exact_ms = None, []
    if mode != "hybrid":  # exact search: recall@10 of the index, and the latency baseline (one query, one core)
        exact = _exact_topk(root, ds, qvecs, 10)
        recall = float(np.mean([len(set(raw_ids[i]) & set(exact[i])) / 10 for i in range(len(qvecs))]))
        for i in range(3):
            t = time.perf_counter()
            _exact_topk(root, ds, qvecs[i : i + 1], 10)
            exact_ms.append((time.perf_counter() - t) * 1000)
    rows = []
    if sweep and mode != "hybrid" and hasattr(ds.index, "config"):  # exact (above) is the truth of every pair
        configured = ds.index.config
        probes, rescores = ([int(x) for x in part.split(",")] for part in sweep.split(":"))
        for nprobe in probes:
            for rescore in rescores:
                ds.index.config = configured.model_copy(update={"nprobe": nprobe, "rescore": rescore})
                for i in range(10):
                    ds.search(qvecs[i : i + 1], 10)
                ms, got = [], np.zeros((len(qvecs), 10), dtype=np.int64)
                for i in range(len(qvecs)):
                    t = time.perf_counter()
                    got[i] = ds.search(qvecs[i : i + 1], 10)[1][0]
                    ms.append((time.perf_counter() - t) * 1000)
                rec = float(np.mean([len(set(got[i]) & set(exact[i])) / 10 for i in range(len(qvecs))]))
                rows.append({"nprobe": nprobe, "rescore": rescore, "recall_at_10": round(rec, 4), **_percentiles(ms), "load": load()})
        ds.index.config = configured
    live = len(ds)
    index_kind = ds.manifest.index.kind if ds.manifest.index else "?"
    return {
        "live_passages": live, "index": index_kind, "open_s": round(open_s, 2),
        "mode": mode, "sparse_backend": type(sparse).__name__ if sparse is not None else None, "queries": len(qvecs),
        "rss_base": base, "rss_after_open": after_open, "rss_after_sparse": after_sparse, "rss_served": served,
        "anon_bytes_per_passage": round((served["anon"] - base["anon"]) / live, 1),
        "anon_bytes_per_passage_dense": round((after_open["anon"] - base["anon"]) / live, 1),
        "file_bytes_per_passage": round((served["file"] - base["file"]) / live, 1),
        "raw_dense": _percentiles(raw_ms), "dense": _percentiles(dense_ms),
        "hybrid": _percentiles(hybrid_ms) if hybrid_ms else None,
        "sparse_stage": _percentiles(sparse_ms) if sparse_ms else None, "exact": _percentiles(exact_ms) if exact_ms else None,
        "recall_at_10": round(recall, 4) if recall is not None else None, "load": load(),
        **({"sparse_warmup": warmup} if sparse is not None else {}),
        **({"sweep": rows} if rows else {}),
    }


# -- the run ------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--work", type=Path, default=Path("/work/tmp-ds-import/sim"))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--keep", action="store_true", help="Keep the release and datastore (default: delete).")
    ap.add_argument("--import-procs", type=int, default=1, help="Importer processes, each on its own release shards.")
    ap.add_argument("--sweep", default="", help="NPROBES:RESCORES, e.g. 16,64:200,1000: the dense serve step also "
                    "measures recall@10 and p50/p99 of each IVF-PQ pair (against the same exact search)")
    ap.add_argument("--stream", action="store_true", help="Write the release one shard at a time: peS2o and the "
                    "shards' generator states first, then each shard is written (the next one while this one imports), "
                    "imported and deleted, so the release never sits on disk whole (10M: ~33 GB instead of ~50 GB).")
    ap.add_argument("--resume", action="store_true", help="With --stream: keep the datastore's finished parts and the "
                    "figures saved so far, and go on from the first shard not imported.")
    ap.add_argument("--build-threads", type=int, default=1, help="FAISS threads of the finalize step (train + add to "
                    "the global index); serving is always measured on one core.")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--serve-mode", default="both", choices=["dense", "hybrid", "both"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        served = serve(args.serve, args.queries, mode=args.serve_mode, sweep=args.sweep)
        # everything the serve step measured (the run's table keeps a selection)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"scale_sim_{args.serve.name}_serve_{args.serve_mode}.json").write_text(json.dumps(served, indent=2))
        print(json.dumps(served))
        return
    # bench/ is on sys.path when run as a script
    from synthetic_release import PLAN, plan_release, write_release

    src, ds_root = args.work / f"release-{args.n}", args.work / f"ds-{args.n}"
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scale_sim_{args.n}.json"
    results: dict[str, Any] = {"n": args.n, "shards": args.shards, "cpus": os.cpu_count(), "load_start": load(),
                               "stream": args.stream}
    if args.resume and out.is_file():
        results = json.loads(out.read_text())
    marker = src / (PLAN if args.stream else "synthetic.json")
    if not (marker.is_file() and json.loads(marker.read_text()).get("n") == args.n):
        shutil.rmtree(src, ignore_errors=True)
        t = time.perf_counter()
        info = (plan_release if args.stream else write_release)(src, args.n, args.shards)
        results["generate_s"] = round(time.perf_counter() - t, 1)
    else:
        info = json.loads(marker.read_text())
    results["release"] = {k: v for k, v in info.items() if k != "per_shard"}
    results["release"]["shard0"] = {k: v for k, v in info["per_shard"][0].items() if k != "state"}
    results["release_bytes"] = {"passages": du(src / "passages"), "embeddings": du(src / "embeddings"), "pes2o": du(src / "pes2o")}
    if not (args.stream and args.resume):
        shutil.rmtree(ds_root, ignore_errors=True)

    def checkpoint(step: str) -> None:  # a run cut short still leaves the steps it finished
        results["finished_steps"] = [*results.get("finished_steps", []), step]
        out.write_text(json.dumps(results, indent=2))

    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OPENSCHOLAR_RETRIEVAL__PIPELINE="dense")
    py = sys.executable
    cli = [py, "-m", "cli", "datastore", "import-openscholar", str(src), "--out", str(ds_root), "--trust-pickles",
           "--papers", str(src / "pes2o" / "pes2o.jsonl"), "--no-progress", "--json"]
    if args.stream:
        parts, report = import_streamed(args, src, ds_root, cli, env, results, checkpoint)
    else:
        results["read_baseline"] = read_baseline(src)
        print(f"[read baseline] {results['read_baseline']}", file=sys.stderr)
        checkpoint("read_baseline")
        procs = max(1, min(args.import_procs, args.shards))
        cmds = [[*cli, "--shards", ",".join(str(s) for s in range(i, args.shards, procs))] for i in range(procs)]
        parts = run_measured(cmds if procs > 1 else cli, env, f"import parts ({procs} processes)")
        parts["processes"] = procs
        report = _merge_reports(_json_objects(parts.pop("stdout")))
    imported = report["imported"]
    parts["passages_per_s"] = round(imported / parts["seconds"], 1)
    parts["ratio_to_read_baseline"] = round(parts["passages_per_s"] / results["read_baseline"]["passages_per_s"], 3)
    # the shards' own time (without the process start and the join table's load)
    parts["shard_seconds"] = round(sum(s["seconds"] for s in report["shards"]), 1)
    parts["passages_per_s_in_shards"] = round(imported / max(parts["shard_seconds"], 1e-9), 1)
    results["import_parts"] = parts
    results["import_report"] = {"imported": imported, "join": report["join"], "shard0": report["shards"][0],
                                "matched": sum(s["papers_matched"] for s in report["shards"]),
                                "unmatched": sum(s["papers_unmatched"] for s in report["shards"])}
    checkpoint("import_parts")
    results["build_threads"] = args.build_threads
    fin = run_measured([*cli, "--finish", "--index", "ivfpq"], dict(env, OMP_NUM_THREADS=str(args.build_threads)),
                       f"finalize (global IVF-PQ, {args.build_threads} FAISS threads)")
    fin.pop("stdout")
    fin["passages_per_s"] = round(imported / fin["seconds"], 1)
    results["finalize"] = fin
    checkpoint("finalize")
    dense = run_measured([py, str(Path(__file__).resolve()), "--serve", str(ds_root), "--queries", str(args.queries),
                          "--serve-mode", "dense", "--sweep", args.sweep], env, "serve dense")
    results["serve_dense"] = json.loads(dense.pop("stdout").strip().splitlines()[-1])
    results["serve_dense_process"] = dense
    checkpoint("serve_dense")
    env_h = dict(env, OPENSCHOLAR_RETRIEVAL__PIPELINE="hybrid")
    sparse = run_measured(
        [py, "-c", ("from pathlib import Path; from openscholar.settings import load_settings; "
                    "from openscholar.indexing import refresh_derived_indexes; "
                    f"print(refresh_derived_indexes(load_settings(), Path({str(ds_root)!r})))")], env_h, "sparse index")
    results["sparse_build"] = {**sparse, "passages_per_s": round(imported / sparse["seconds"], 1)}
    results["disk"] = {
        "parts_vectors": sum((p / "vectors.f16.npy").stat().st_size for p in (ds_root / "parts").iterdir()),
        "parts_passages": sum((p / "passages.sqlite").stat().st_size for p in (ds_root / "parts").iterdir()),
        "index": du(ds_root / "index"),
        "sparse": sum(du(p) for p in ds_root.iterdir() if p.is_dir() and p.name not in ("parts", "index", "import")),
        "paper_join_table": du(ds_root / "import"),
        "total": du(ds_root),
    }
    results["disk_bytes_per_passage"] = {k: round(v / imported, 1) for k, v in results["disk"].items()}
    results["work_dir_bytes_after_sparse"] = du(args.work)
    checkpoint("sparse_build")
    served = run_measured([py, str(Path(__file__).resolve()), "--serve", str(ds_root), "--queries", str(args.queries),
                           "--serve-mode", "hybrid"], env_h, "serve hybrid")
    hyb = json.loads(served.pop("stdout").strip().splitlines()[-1])
    d = results["serve_dense"]
    results["serve"] = {**d, **{k: hyb[k] for k in ("hybrid", "sparse_stage", "sparse_backend", "rss_after_sparse",
                                                     "rss_served", "anon_bytes_per_passage", "file_bytes_per_passage")},
                        "anon_bytes_per_passage_dense": d["anon_bytes_per_passage"], "load_hybrid": hyb["load"]}
    results["serve_process"] = served
    results["load_end"] = load()
    checkpoint("serve")
    print_table(results)
    from projection import project_service

    project_service(results, RESULTS / "projection_import.json")
    if not args.keep:
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(ds_root, ignore_errors=True)


def import_streamed(
    args: argparse.Namespace, src: Path, ds_root: Path, cli: list[str], env: dict[str, str],
    results: dict[str, Any], checkpoint: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write, import and delete the release shard by shard (the next shard is written while this one
    imports: one importer process, one generator process). The import's figures are summed (seconds)
    or maxed (peak memory) over the shards; the read baseline is taken on each shard before it imports."""
    from synthetic_release import delete_shard

    from datastore.parts import part_name

    gen = [sys.executable, str(Path(__file__).resolve().parent / "synthetic_release.py"), str(src), "--shard"]
    runs: list[dict[str, Any]] = results.setdefault("import_shards", [])
    done = {r["shard"] for r in runs if (ds_root / "parts" / part_name(r["shard"]) / "part.json").is_file()}
    runs[:] = [r for r in runs if r["shard"] in done]
    todo = [s for s in range(args.shards) if s not in done]
    t_wall = time.perf_counter()
    writer = subprocess.Popen([*gen, str(todo[0])], cwd=REPO) if todo else None
    peak_disk = results.get("peak_work_dir_bytes", 0)
    for i, s in enumerate(todo):
        assert writer is not None
        if writer.wait() != 0:
            raise SystemExit(f"writing shard {s} failed (exit {writer.returncode})")
        sizes = {"passages": du(src / "passages"), "embeddings": du(src / "embeddings")}
        writer = subprocess.Popen([*gen, str(todo[i + 1])], cwd=REPO) if i + 1 < len(todo) else None
        base = read_baseline(src, [s])
        run = run_measured([*cli, "--shards", str(s)], env, f"import shard {s}")
        rep = _merge_reports(_json_objects(run.pop("stdout")))
        peak_disk = max(peak_disk, du(args.work))
        delete_shard(src, s)
        runs.append({"shard": s, **run, "read_baseline": base, "release_bytes": sizes, "imported": rep["imported"],
                     "report": rep["shards"][0], "join": rep["join"]})
        results["peak_work_dir_bytes"] = peak_disk
        checkpoint(f"import_shard_{s}")
    runs.sort(key=lambda r: r["shard"])
    imported = sum(r["imported"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    base_n = sum(r["read_baseline"]["passages"] for r in runs)
    base_s = sum(r["read_baseline"]["passages"] / r["read_baseline"]["passages_per_s"] for r in runs)
    results["read_baseline"] = {"seconds": round(base_s, 1), "passages": base_n, "passages_per_s": round(base_n / max(base_s, 1e-9), 1)}
    # streamed: the largest shard on disk at once, not the whole release
    results["release_bytes"].update({f"{k}_largest_shard": max(r["release_bytes"][k] for r in runs) for k in ("passages", "embeddings")})
    parts = {
        "seconds": round(seconds, 1), "processes": 1, "streamed": True,
        "wall_s_this_run": round(time.perf_counter() - t_wall, 1),
        "peak": {k: max(r["peak"][k] for r in runs) for k in ("rss", "anon", "file")},
        "load_before": runs[0]["load_before"], "load_after": runs[-1]["load_after"],
    }
    report = {"imported": imported, "shards": [r["report"] for r in runs], "join": runs[0]["join"]}
    return parts, report


def print_table(r: dict[str, Any]) -> None:
    n, s = r["import_report"]["imported"], r["serve"]
    mb = 1e6
    rows = [
        ("passages imported", f"{n:,} ({r['import_report']['shard0']['passages_without_vector']} dropped: shard 0 mismatch)"),
        ("paper join", f"{r['import_report']['matched']:,} matched, {r['import_report']['unmatched']:,} unmatched"),
        ("read-only baseline", f"{r['read_baseline']['passages_per_s']:,.0f} passages/s"),
        ("import (parts)", (f"{r['import_parts']['passages_per_s']:,.0f} passages/s ({r['import_parts'].get('passages_per_s_in_shards', 0):,.0f}/s "
                            f"inside the shards; {r['import_parts']['ratio_to_read_baseline']:.2f}x "
                            f"the read baseline), {r['import_parts']['seconds']:.0f}s, peak anon "
                            f"{r['import_parts']['peak']['anon'] / mb:.0f} MB, file {r['import_parts']['peak']['file'] / mb:.0f} MB")),
        ("finalize (IVF-PQ)", f"{r['finalize']['seconds']:.0f}s ({r['finalize']['passages_per_s']:,.0f}/s), peak anon {r['finalize']['peak']['anon'] / mb:.0f} MB, file {r['finalize']['peak']['file'] / mb:.0f} MB"),
        ("sparse index", f"{r['sparse_build']['seconds']:.0f}s, peak anon {r['sparse_build']['peak']['anon'] / mb:.0f} MB"),
        ("disk / passage", ", ".join(f"{k} {v:.0f} B" for k, v in r["disk_bytes_per_passage"].items())),
        ("serving anon / passage", f"{s['anon_bytes_per_passage']:.1f} B dense+sparse ({s['anon_bytes_per_passage_dense']:.1f} B dense only), file-backed {s['file_bytes_per_passage']:.1f} B"),
        ("dense index p50/p99", f"{s['raw_dense']['p50_ms']:.1f} / {s['raw_dense']['p99_ms']:.1f} ms (exact search {s['exact']['p50_ms']:.0f} ms: {s['exact']['p50_ms'] / max(s['raw_dense']['p50_ms'], 1e-9):.0f}x slower)"),
        ("dense pipeline p50/p99", f"{s['dense']['p50_ms']:.1f} / {s['dense']['p99_ms']:.1f} ms"),
        ("hybrid pipeline p50/p99", f"{s['hybrid']['p50_ms']:.1f} / {s['hybrid']['p99_ms']:.1f} ms ({s['sparse_backend']}, sparse stage p50 {s['sparse_stage']['p50_ms']:.1f} ms)"),
        ("dense recall@10", f"{s['recall_at_10']:.3f} ({s['index']})"),
        ("load average", f"{r['load_start']} -> {r['load_end']}"),
    ]
    width = max(len(a) for a, _ in rows)
    print(f"scale_sim N={r['n']:,}")
    for a, b in rows:
        print(f"  {a.ljust(width)}  {b}")
    if s.get("sweep"):
        print("  sweep (raw dense search, one core): nprobe rescore recall@10 p50 p99 ms")
        for row in s["sweep"]:
            print(f"    {row['nprobe']:>6} {row['rescore']:>7} {row['recall_at_10']:>7} {row['p50_ms']:>7} {row['p99_ms']:>7}")


if __name__ == "__main__":
    main()
