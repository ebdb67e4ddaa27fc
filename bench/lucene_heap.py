"""Lucene serving memory under a bounded JVM heap (`sparse.lucene_heap_mb`), and its projection.

For each N (Lucene indexes of `sparse_scale.py`'s synthetic peS2o-shaped passages, built once and
kept under --scratch) and each heap (`none` = the JVM default, 1/4 of RAM): one fresh process that
starts the JVM through the product's `start_jvm` (the JVM sees every core, so its GC is the one a
serving node gets), then pins all its threads to one core, opens the searcher and runs --queries
single queries (after 20 warm-up ones). Recorded: anonymous vs file-backed resident memory before
the JVM, after it started, after opening, and every 500 queries; the JVM's own heap figures
(max, committed, used); p50/p99. The rows of the two sizes separate the fixed part of the
serving process's anonymous memory from the part that grows with N; the projection adds the dense
index's measured anonymous bytes per passage and evaluates at 10M and 237M passages.

Run: nice -n 10 python bench/lucene_heap.py --sizes 200000 1000000 --heaps none 1024 512 256 128 64
     [--scratch /work/tmp-lucene-heap] [--queries 10000] [--build-size 200000 --build-heaps none 2048 512]
A missing index is built with `sparse_scale.py build lucene` first (kept for the next run).
``--concurrent T --sizes`` (no size: 1M) runs T query threads on one JVM per heap (k = 100).
``--build-size`` also times fresh builds under several index heaps (`sparse.lucene_index_heap_mb`;
Lucene's indexing buffer is 1/8 of the heap), one process each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sparse_scale
from sparse_scale import _cdf, corpus, load, memory, peak_rss, queries, vocabulary

RESULTS = HERE / "results" / "lucene_heap.json"
DENSE = HERE / "results" / "index_global_1000000.json"  # the global IVF-PQ index's serving figures
SCALE_SIM = HERE / "results" / "scale_sim_1000000.json"  # dense-only serving process at 1M (import path)
PROJECT_AT = (10_000_000, 237_000_000)
TARGET_B_PER_PASSAGE = 100  # issue 13: anonymous serving memory, dense + sparse, at 10M


def _pin_all_threads(cpu: int) -> None:
    """Every thread of this process (the JVM's too) on one core; new threads inherit it."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except (ProcessLookupError, PermissionError):  # a thread that ended meanwhile
            pass


def phase_serve(directory: Path, heap: str, n_queries: int) -> dict[str, Any]:
    words, cdf = vocabulary(), _cdf()
    qs = queries(n_queries + 20, words, cdf)
    del words, cdf
    import gc

    from retriever.sparse.lucene_backend import _autoclass, open_searcher, search_index, start_jvm

    gc.collect()
    no_jvm = memory()
    start_jvm(None if heap == "none" else int(heap))
    _pin_all_threads(min(os.sched_getaffinity(0)))
    runtime = _autoclass("java.lang.Runtime").getRuntime()
    beans = _autoclass("java.lang.management.ManagementFactory").getGarbageCollectorMXBeans()
    gcs = [beans.get(i).getName() for i in range(beans.size())]
    jvm = memory()
    t0 = time.perf_counter()
    searcher = open_searcher(directory / "index", 0.9, 0.4)
    opened = memory()
    open_s = time.perf_counter() - t0
    for q in qs[:20]:
        search_index(searcher, [q], 10)
    lat: list[float] = []
    trace: list[dict[str, int]] = []
    load0 = load()
    for i, q in enumerate(qs[20:], 1):
        t = time.perf_counter()
        search_index(searcher, [q], 10)
        lat.append((time.perf_counter() - t) * 1000)
        if i % 500 == 0:
            m = memory()
            trace.append({"queries": i, "anonymous": m["anonymous"], "heap_committed": int(runtime.totalMemory())})
    serving = memory()
    committed, used = int(runtime.totalMemory()), int(runtime.totalMemory() - runtime.freeMemory())
    # What the heap must hold: the live objects after a full collection (the open index's on-heap
    # structures, Anserini's and Lucene's classes' statics), apart from the garbage queries leave.
    _autoclass("java.lang.System").gc()
    live = int(runtime.totalMemory() - runtime.freeMemory())
    lat_a = np.asarray(lat)
    return {
        "heap_setting_mb": None if heap == "none" else int(heap),
        "gc": gcs,
        "max_heap": int(runtime.maxMemory()),
        "heap_committed": committed,
        "heap_used": used,
        "heap_live_after_gc": live,
        "open_s": round(open_s, 3),
        "p50_ms": round(float(np.percentile(lat_a, 50)), 2),
        "p99_ms": round(float(np.percentile(lat_a, 99)), 2),
        "queries": len(lat),
        "memory": {"no_jvm": no_jvm, "jvm_started": jvm, "opened": opened, "serving": serving},
        # what the Lucene backend adds to a serving process: the JVM itself, the open index, the queries
        "anon_jvm": jvm["anonymous"] - no_jvm["anonymous"],
        "anon_total": serving["anonymous"] - no_jvm["anonymous"],
        "anon_after_jvm": serving["anonymous"] - jvm["anonymous"],
        "file_rss": serving["file"],
        "trace": trace,
        "load": [load0, load()],
    }


def phase_concurrent(directory: Path, heap: str, threads: int, n_queries: int) -> dict[str, Any]:
    """``threads`` Python threads searching one JVM at once (pyjnius lets Java calls run in
    parallel: 2 threads gave 1.98x the queries/s of one here), k = 100: the heap a busy server needs."""
    import threading

    from retriever.sparse.lucene_backend import _autoclass, open_searcher, search_index, start_jvm

    qs = queries(n_queries + 50, vocabulary(), _cdf())
    no_jvm = memory()["anonymous"]
    start_jvm(None if heap == "none" else int(heap))
    searcher = open_searcher(directory / "index", 0.9, 0.4)
    for q in qs[:50]:
        search_index(searcher, [q], 10)
    lat: list[float] = []

    def run(part: list[str]) -> None:
        for q in part:
            t = time.perf_counter()
            search_index(searcher, [q], 100)
            lat.append((time.perf_counter() - t) * 1000)

    workers = [threading.Thread(target=run, args=(qs[50 + i :: threads],)) for i in range(threads)]
    t0, load0 = time.perf_counter(), load()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    runtime = _autoclass("java.lang.Runtime").getRuntime()
    lat_a = np.asarray(lat)
    return {
        "heap_setting_mb": None if heap == "none" else int(heap),
        "threads": threads,
        "k": 100,
        "queries": len(lat),
        "queries_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(lat_a, 50)), 2),
        "p99_ms": round(float(np.percentile(lat_a, 99)), 2),
        "heap_committed": int(runtime.totalMemory()),
        "anon_total": memory()["anonymous"] - no_jvm,
        "load": [load0, load()],
    }


def phase_build(directory: Path, n: int, heap: str) -> dict[str, Any]:
    """A fresh build of N passages with 2 indexing threads, the JVM started with the index heap."""
    from retriever.sparse.lucene_backend import INDEX_HEAP, MAX_RAM_BUFFER_MB, index_docs, start_jvm

    max_heap = start_jvm(None if heap == "none" else int(heap), INDEX_HEAP)
    words, cdf = vocabulary(), _cdf()
    t0, load0 = time.perf_counter(), load()
    done = index_docs(directory / "index", corpus(0, n, words, cdf), threads=2, create=True)
    return {
        "heap_setting_mb": None if heap == "none" else int(heap),
        "max_heap": max_heap,
        "ram_buffer_mb": min(MAX_RAM_BUFFER_MB, max(8, (max_heap >> 20) // 8)),
        "passages": done,
        "seconds": round(time.perf_counter() - t0, 2),
        "peak_rss": peak_rss(),
        "load": [load0, load()],
    }


def _child(*args: str) -> dict[str, Any]:
    return sparse_scale._child(*args, script=__file__)


def ensure_index(scratch: Path, n: int) -> Path:
    directory = scratch / f"lucene-{n}"
    if not (directory / "index").is_dir():
        print(f"[{time.strftime('%H:%M:%S')}] building the Lucene index of {n:,} passages", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
        subprocess.run([sys.executable, str(HERE / "sparse_scale.py"), "build", "lucene", str(directory), "0", str(n)], check=True, env=env)
    return directory


def dense_anon_per_passage() -> dict[str, Any]:
    """The dense side, as measured: the global IVF-PQ index's anonymous bytes per passage (index_global,
    1M) and the dense-only serving process of the import path (scale_sim, 1M)."""
    out: dict[str, Any] = {}
    if DENSE.is_file():
        serve = json.loads(DENSE.read_text())["serve"]
        out["index_global_anon_B_per_passage"] = serve[0]["anon_delta_bytes_per_passage"]
    if SCALE_SIM.is_file():
        d = json.loads(SCALE_SIM.read_text())["serve_dense"]
        out["scale_sim_dense_open_B_per_passage"] = d["anon_bytes_per_passage_dense"]
        out["scale_sim_dense_served_anon_delta"] = d["rss_served"]["anon"] - d["rss_base"]["anon"]
        out["scale_sim_n"] = d["live_passages"]
    return out


def fit(rows: list[dict[str, Any]], heap: int | None) -> dict[str, Any] | None:
    """Fixed and per-passage parts at one heap setting, from the two sizes measured.

    The anonymous totals of two runs differ by GC timing (~10 MB), so their slope cannot resolve a
    per-passage part below ~12 B/passage over 800k passages; the heap's live set after a full GC
    can (it is what a bounded heap must hold). Projection: fixed = the larger anonymous total
    measured, per passage = the live set's slope (or the anonymous slope where larger), from the
    larger size on."""
    rs = sorted((r for r in rows if r["serve"]["heap_setting_mb"] == heap), key=lambda r: r["n"])
    if len(rs) < 2 or rs[0]["n"] == rs[-1]["n"]:
        return None
    lo, hi = rs[0], rs[-1]
    dn = hi["n"] - lo["n"]
    anon_slope = (hi["serve"]["anon_total"] - lo["serve"]["anon_total"]) / dn
    live_slope = (hi["serve"]["heap_live_after_gc"] - lo["serve"]["heap_live_after_gc"]) / dn
    return {
        "heap_setting_mb": heap,
        "sizes": [lo["n"], hi["n"]],
        "anon_totals": [lo["serve"]["anon_total"], hi["serve"]["anon_total"]],
        "anon_slope_B_per_passage": round(anon_slope, 2),
        "live_heap": [lo["serve"]["heap_live_after_gc"], hi["serve"]["heap_live_after_gc"]],
        "live_heap_slope_B_per_passage": round(live_slope, 3),
        "fixed_bytes": max(lo["serve"]["anon_total"], hi["serve"]["anon_total"]),
        "per_passage_bytes": round(max(anon_slope, live_slope, 0.0), 3),
        "from_n": hi["n"],
    }


def project(fits: list[dict[str, Any]], dense: dict[str, Any]) -> list[dict[str, Any]]:
    d = dense.get("index_global_anon_B_per_passage")
    dense_fixed = max(dense.get("scale_sim_dense_served_anon_delta", 0) - dense.get("scale_sim_dense_open_B_per_passage", 0) * dense.get("scale_sim_n", 0), 0)
    out = []
    for f in fits:
        for n in PROJECT_AT:
            lucene = f["fixed_bytes"] + f["per_passage_bytes"] * (n - f["from_n"])
            row: dict[str, Any] = {"heap_setting_mb": f["heap_setting_mb"], "n": n, "lucene_anon_bytes": int(lucene), "lucene_B_per_passage": round(lucene / n, 1)}
            if d is not None:
                total = lucene + d * n + dense_fixed
                row |= {"dense_B_per_passage": d, "dense_fixed_bytes": int(dense_fixed), "dense_plus_lucene_B_per_passage": round(total / n, 1)}
                row["meets_target"] = row["dense_plus_lucene_B_per_passage"] <= TARGET_B_PER_PASSAGE
            if f["heap_setting_mb"] is None:
                row["note"] = "unbounded: a lower bound; the heap grows with load towards the JVM default max (1/4 of RAM)"
            out.append(row)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = "| N | heap setting MB | GC | max heap MB | JVM anon MB | anon total MB | anon B/passage | heap committed MB | live heap after GC MB | file RSS MB | p50 ms | p99 ms | load |"
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        s = r["serve"]
        lines.append(
            f"| {r['n']:,} | {s['heap_setting_mb'] or 'none (JVM default)'} | {s['gc'][0].split()[0]} | {s['max_heap'] >> 20} | "
            f"{s['anon_jvm'] / 2**20:.0f} | {s['anon_total'] / 2**20:.0f} | {s['anon_total'] / r['n']:.0f} | "
            f"{s['heap_committed'] >> 20} | {s.get('heap_live_after_gc', 0) / 2**20:.1f} | {s['file_rss'] >> 20} | {s['p50_ms']} | {s['p99_ms']} | {s['load'][1]} |"
        )
    return "\n".join(lines)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    fits = [f for h in sorted({r["serve"]["heap_setting_mb"] or 0 for r in rows}) if (f := fit(rows, h or None))]
    dense = dense_anon_per_passage()
    return {"rows": rows, "fits": fits, "dense": dense, "projection": project(fits, dense)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[200_000, 1_000_000])
    ap.add_argument("--heaps", nargs="+", default=["none", "512", "256"], help="MB, or none (the JVM default)")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--scratch", type=Path, default=Path("/work/tmp-lucene-heap"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--build-size", type=int, default=0, help="also time fresh builds of this many passages (0: none)")
    ap.add_argument("--build-heaps", nargs="+", default=["none", "2048", "512"], help="index heaps (MB) of those builds")
    ap.add_argument("--reproject", action="store_true", help="only recompute the fits and projection of the saved rows")
    ap.add_argument("--concurrent", type=int, default=0, help="also run this many query threads on one JVM at the largest size, per heap")
    args = ap.parse_args()
    saved = json.loads(args.out.read_text()) if args.out.is_file() else {}
    rows: list[dict[str, Any]] = saved.get("rows", [])
    result: dict[str, Any] = {**saved, "cpu": os.cpu_count()}
    if args.reproject:
        args.sizes = []
        result |= _summary(rows)
        args.out.write_text(json.dumps(result, indent=2))
        print(table(rows), flush=True)
    if args.build_size:
        builds = [b for b in saved.get("builds", []) if b["n"] != args.build_size]
        for heap in args.build_heaps:
            directory = args.scratch / f"build-{args.build_size}"
            shutil.rmtree(directory, ignore_errors=True)
            print(f"[{time.strftime('%H:%M:%S')}] build N={args.build_size:,} index heap={heap} (load {load()})", flush=True)
            builds.append({"n": args.build_size, **_child("build", str(directory), str(args.build_size), heap)})
            shutil.rmtree(directory, ignore_errors=True)
            print(json.dumps(builds[-1]), flush=True)
            result["builds"] = builds
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2))
    for n in args.sizes:
        directory = ensure_index(args.scratch, n)
        for heap in args.heaps:
            print(f"[{time.strftime('%H:%M:%S')}] serve N={n:,} heap={heap} (load {load()})", flush=True)
            serve = _child("serve", str(directory), heap, str(args.queries))
            setting = serve["heap_setting_mb"]
            rows = [r for r in rows if (r["n"], r["serve"]["heap_setting_mb"]) != (n, setting)] + [{"n": n, "serve": serve}]
            rows.sort(key=lambda r: (r["n"], -(r["serve"]["heap_setting_mb"] or 1 << 30)))
            result |= _summary(rows)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2))
            print(table(rows), flush=True)
    if args.concurrent:
        n = max(args.sizes) if args.sizes else 1_000_000
        directory = ensure_index(args.scratch, n)
        conc = []
        for heap in args.heaps:
            print(f"[{time.strftime('%H:%M:%S')}] {args.concurrent} threads N={n:,} heap={heap} (load {load()})", flush=True)
            conc.append({"n": n, **_child("concurrent", str(directory), heap, str(args.concurrent), str(args.queries))})
            print(json.dumps(conc[-1]), flush=True)
            result["concurrent"] = conc
            args.out.write_text(json.dumps(result, indent=2))
    for p in result.get("projection", []):
        print(json.dumps(p), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        print(json.dumps(phase_serve(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "concurrent":
        print(json.dumps(phase_concurrent(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "build":
        print(json.dumps(phase_build(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4])))
    else:
        main()
