"""Global IVF-PQ benchmark: one index over N synthetic 768-d fp16 vectors in parts on disk.

Measures what issue 13 asks of the datastore's dense side at 1M and 10M passages:
build time and peak RSS while building (bytes/passage, the IVF-PQ path of datastore/index/build.py:
sample across parts, train once, add in bounded batches, merge on-disk lists), anonymous vs
file-backed RSS while serving (/proc/self/smaps_rollup, after torch is imported as in the service),
single-query p50/p99 on ONE FAISS thread with and without an exclusion bitmap (1% deleted), and
recall@10 against exact search. Baseline in the same run: exact brute force over the same fp16 files
(batched, all cores). Each stage runs in its own process so RSS figures are clean.

    nice -n 15 .venv/bin/python bench/index_global.py --n 1000000 --dir /work/tmp-ds-index/1m
    nice -n 15 .venv/bin/python bench/index_global.py --n 10000000 --dir /work/tmp-ds-index/10m --queries 100

Writes bench/results/index_global_<n>.json (and keeps the data under --dir unless --clean).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

K = 10
CHUNK = 100_000


def smaps() -> dict[str, int]:
    """Rss, Anonymous and file-backed (Rss - Anonymous) bytes of this process."""
    out: dict[str, int] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            out[key.strip()] = int(parts[0]) * 1024
    return {"rss": out.get("Rss", 0), "anonymous": out.get("Anonymous", 0),
            "file_backed": out.get("Rss", 0) - out.get("Anonymous", 0)}


def rss_by_file(suffixes: tuple[str, ...] = (".ivfdata", ".f16.npy", ".u8")) -> dict[str, int]:
    """Resident bytes of this process's mappings of files ending in each suffix (from /proc/self/smaps)."""
    out = dict.fromkeys(suffixes, 0)
    current = ""
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            current = head[5] if len(head) >= 6 else ""
        elif line.startswith("Rss:"):
            for suf in suffixes:
                if current.endswith(suf):
                    out[suf] += int(head[1]) * 1024
    return out


class AnonPeak:
    """Polls RssAnon (/proc/self/status) every 50 ms in a thread: the peak of anonymous memory.

    ru_maxrss counts the file-backed pages of the memory-mapped parts too, which are page cache the
    kernel can drop at will; the anonymous peak is what building really holds.
    """

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak = max(self.peak, int(line.split()[1]) * 1024)
            self._stop.wait(0.05)

    def phase(self) -> int:
        """The peak since the last call (then restart from the current value)."""
        peak = self.peak
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                self.peak = int(line.split()[1]) * 1024
        return peak

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- stages (each runs in a child process) ------------------------------------------------------
def stage_gen(d: Path, n: int, dim: int, parts: int, nq: int, deleted: float, seed: int = 0) -> dict[str, Any]:
    """Parts of clustered, anisotropic, un-normalized vectors (norms ~ lognormal) as fp16 .npy files."""
    rng = np.random.default_rng(seed)
    centers = 4096
    rot, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    spectrum = (np.arange(dim) + 1.0) ** -0.87
    spectrum *= 0.89 / spectrum.sum()
    scale = (np.sqrt(spectrum)[:, None] * rot.T).astype(np.float32)
    mean = rng.standard_normal(dim).astype(np.float32)
    mean *= 0.33 / np.linalg.norm(mean)
    mu = mean + np.sqrt(0.75) * rng.standard_normal((centers, dim)).astype(np.float32) @ scale

    def draw(m: int) -> np.ndarray:
        x = mu[rng.integers(0, centers, m)] + np.sqrt(0.25) * rng.standard_normal((m, dim)).astype(np.float32) @ scale
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x * rng.lognormal(0.4, 0.15, size=(m, 1)).astype(np.float32)  # contriever-like: not normalized

    (d / "parts").mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    bounds = np.linspace(0, n, parts + 1).astype(np.int64)
    for p in range(parts):
        size = int(bounds[p + 1] - bounds[p])
        mm = np.lib.format.open_memmap(d / "parts" / f"part-{p:05d}.f16.npy", mode="w+", dtype=np.float16, shape=(size, dim))
        for lo in range(0, size, CHUNK):
            hi = min(size, lo + CHUNK)
            mm[lo:hi] = draw(hi - lo)
        mm.flush()
        del mm
    np.save(d / "queries.npy", draw(nq))
    tomb = np.zeros(n, dtype=np.uint8)
    tomb[rng.choice(n, int(n * deleted), replace=False)] = 1
    tomb.tofile(d / "tombstones.u8")
    return {"gen_s": round(time.perf_counter() - t, 1)}


def stage_gen_release(d: Path, n: int, dim: int, parts: int, nq: int, deleted: float, seed: int = 0) -> dict[str, Any]:
    """bench/synthetic_release.py's vectors (topic centre + paper offset + noise; no texts) as fp16 parts.

    Queries as bench/scale_sim.py makes them: stored passages picked at random, vector + noise of
    the per-passage noise's size (so each query's own passage is among its exact top 10).
    """
    from bench.synthetic_release import DIM, release_vectors

    if dim != DIM:
        raise SystemExit(f"--data release writes {DIM}-d vectors; drop --dim {dim}")
    rng = np.random.default_rng(seed + 1)
    (d / "parts").mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    bounds = np.linspace(0, n, parts + 1).astype(np.int64)
    batches = release_vectors(n, seed=seed, batch=CHUNK)
    pending = np.zeros((0, dim), np.float16)
    for p in range(parts):
        size = int(bounds[p + 1] - bounds[p])
        mm = np.lib.format.open_memmap(d / "parts" / f"part-{p:05d}.f16.npy", mode="w+", dtype=np.float16, shape=(size, dim))
        lo = 0
        while lo < size:
            if not len(pending):
                pending = next(batches)
            take = min(size - lo, len(pending))
            mm[lo : lo + take] = pending[:take]
            pending, lo = pending[take:], lo + take
        mm.flush()
        del mm
    picks = np.sort(rng.choice(n, nq, replace=False))
    vecs = np.concatenate([np.asarray(a[picks[(picks >= s) & (picks < s + len(a))] - s], np.float32) for s, a in open_parts(d)])
    q = vecs + rng.standard_normal(vecs.shape).astype(np.float32) * np.float32(0.45 / np.sqrt(dim))
    np.save(d / "queries.npy", q[rng.permutation(nq)])
    tomb = np.zeros(n, dtype=np.uint8)
    tomb[rng.choice(n, int(n * deleted), replace=False)] = 1
    tomb.tofile(d / "tombstones.u8")
    return {"gen_s": round(time.perf_counter() - t, 1), "data": "release"}


def open_parts(d: Path) -> list[tuple[int, np.ndarray]]:
    out, start = [], 0
    for f in sorted((d / "parts").glob("part-*.f16.npy")):
        mm = np.load(f, mmap_mode="r")
        out.append((start, mm))
        start += len(mm)
    return out


def stage_truth(d: Path) -> dict[str, Any]:
    """Exact top-k by inner product over the fp16 parts, with and without the deleted ids."""
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    q = np.load(d / "queries.npy")
    tomb = np.fromfile(d / "tombstones.u8", dtype=np.uint8)
    best = [np.full((len(q), 0), -np.inf, np.float32), np.full((len(q), 0), -np.inf, np.float32)]
    ids = [np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.int64)]
    t = time.perf_counter()
    for start, mm in open_parts(d):
        for lo in range(0, len(mm), CHUNK):
            x = np.asarray(mm[lo : lo + CHUNK], dtype=np.float32)
            s = q @ x.T
            gid = np.arange(start + lo, start + lo + len(x))
            for j, mask in enumerate((None, tomb[gid] != 0)):
                sj = s if mask is None else np.where(mask[None, :], -np.inf, s)
                cat_s = np.hstack([best[j], sj])
                cat_i = np.hstack([ids[j], np.broadcast_to(gid, sj.shape)])
                top = np.argpartition(-cat_s, K, axis=1)[:, :K]
                best[j] = np.take_along_axis(cat_s, top, 1)
                ids[j] = np.take_along_axis(cat_i, top, 1)
    np.save(d / "truth.npy", ids[0])
    np.save(d / "truth_excl.npy", ids[1])
    secs = time.perf_counter() - t
    return {"exact_batched_s": round(secs, 1), "exact_ms_per_query_batched_all_cores": round(secs / len(q) * 1000, 2)}


def stage_build(d: Path, memory_mb: int, threads: int) -> dict[str, Any]:
    import faiss

    from datastore.config import DatastoreConfig
    from datastore.index.build import add_sources, sample_rows
    from datastore.index.registry import create_index

    faiss.omp_set_num_threads(threads)
    base_rss = smaps()["rss"]
    base_anon = smaps()["anonymous"]
    poll = AnonPeak()
    sources = open_parts(d)
    n = sum(len(a) for _, a in sources)
    dim = int(sources[0][1].shape[1])
    config = DatastoreConfig(build_memory_mb=memory_mb)
    shutil.rmtree(d / "index", ignore_errors=True)
    shutil.rmtree(d / "work", ignore_errors=True)
    index = create_index("ivfpq", dim, config, workdir=d / "work")
    times: dict[str, float] = {}
    t = time.perf_counter()
    want = index.training_size(n)
    sample = sample_rows([a for _, a in sources], want)
    times["sample_s"] = time.perf_counter() - t
    phases = {"sample": poll.phase()}
    t = time.perf_counter()
    index.train(sample, n_total=n)
    del sample
    times["train_s"] = time.perf_counter() - t
    phases["train"] = poll.phase()
    t = time.perf_counter()
    add_sources(index, sources, config, progress=True)
    times["add_s"] = time.perf_counter() - t
    phases["add"] = poll.phase()
    t = time.perf_counter()
    files = index.save(d / "index")
    times["save_merge_s"] = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    phases["save"] = poll.phase()
    anon_peak = max(max(phases.values()), poll.stop())
    disk = sum((d / "index" / f).stat().st_size for f in files)
    tpl = index._template()
    return {
        **{k: round(v, 1) for k, v in times.items()},
        "build_s": round(sum(times.values()), 1),
        "train_rows": int(want), "nlist": int(tpl.nlist), "m": int(tpl.pq.M),
        "build_memory_mb": memory_mb, "threads": threads,
        "peak_rss_bytes": peak, "rss_before_bytes": base_rss,
        "peak_rss_bytes_per_passage": round((peak - base_rss) / n, 1),
        "peak_anon_bytes": anon_peak, "anon_before_bytes": base_anon, "peak_anon_bytes_by_phase": phases,
        "peak_anon_bytes_per_passage": round((anon_peak - base_anon) / n, 1),
        "index_disk_bytes_per_passage": round(disk / n, 1),
        "vectors_disk_bytes_per_passage": round(sum(a.nbytes for _, a in sources) / n, 1),
    }


def stage_serve(d: Path, nq: int, nprobe: int, rescore: int) -> dict[str, Any]:
    import faiss
    import torch  # noqa: F401 - the service has it loaded (query encoder); count it in the baseline

    from datastore.config import DatastoreConfig, IVFPQConfig
    from datastore.index.base import Exclusion
    from datastore.index.ivfpq import plan_nprobe
    from datastore.index.registry import load_index
    from datastore.part_vectors import PartVectors

    faiss.omp_set_num_threads(1)
    q = np.load(d / "queries.npy")[:nq]
    truth, truth_x = np.load(d / "truth.npy")[:nq], np.load(d / "truth_excl.npy")[:nq]
    before = smaps()
    sources = open_parts(d)
    n = sum(len(a) for _, a in sources)
    config = DatastoreConfig(ivfpq=IVFPQConfig(nprobe=nprobe, rescore=rescore))
    t = time.perf_counter()
    index = load_index(d / "index", int(q.shape[1]), config, vectors=PartVectors(sources))
    tomb = np.memmap(d / "tombstones.u8", dtype=np.uint8, mode="r")
    excl = Exclusion(tomb)
    open_s = time.perf_counter() - t

    def stats(cpu: np.ndarray, wall: np.ndarray) -> dict[str, float]:
        c_ms, w_ms = cpu * 1000, wall * 1000
        return {"p50_ms": round(float(np.percentile(c_ms, 50)), 3), "p99_ms": round(float(np.percentile(c_ms, 99)), 3),
                "wall_p50_ms": round(float(np.percentile(w_ms, 50)), 3),
                "wall_p99_ms": round(float(np.percentile(w_ms, 99)), 3)}

    def run() -> tuple[np.ndarray, np.ndarray, dict[str, float], dict[str, float]]:
        """Each query with and without the exclusion, alternating which goes first (same cache state)."""
        for x in q[:10]:
            index.search(x[None], K)
            index.search(x[None], K, exclude=excl)
        found = {False: np.empty((len(q), K), np.int64), True: np.empty((len(q), K), np.int64)}
        cpu = {False: np.empty(len(q)), True: np.empty(len(q))}
        wall = {False: np.empty(len(q)), True: np.empty(len(q))}
        for i, x in enumerate(q):
            for use in ((False, True) if i % 2 == 0 else (True, False)):
                c, w = time.thread_time(), time.perf_counter()
                _, ids = index.search(x[None], K, exclude=excl if use else None)
                cpu[use][i], wall[use][i] = time.thread_time() - c, time.perf_counter() - w
                found[use][i] = ids[0]
        return found[False], found[True], stats(cpu[False], wall[False]), stats(cpu[True], wall[True])

    def recall(found: np.ndarray, ref: np.ndarray) -> float:
        return round(float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, ref, strict=True)])), 4)

    searcher = index._ready()
    used = plan_nprobe(int(searcher.nlist), config.ivfpq)
    t = time.thread_time()
    for x in q:
        searcher.quantizer.search(x[None], used)
    coarse_ms = (time.thread_time() - t) / len(q) * 1000
    plain, excluded, lat_plain, lat_excl = run()
    deleted = np.flatnonzero(np.asarray(tomb))
    after = smaps()
    by_file = rss_by_file()
    return {
        "nprobe": nprobe, "nprobe_used": used, "rescore": rescore, "queries": len(q), "open_s": round(open_s, 2),
        "recall_at_10": recall(plain, truth), "recall_at_10_excluding": recall(excluded, truth_x),
        "deleted": int(excl.count), "deleted_in_results": int(np.isin(excluded, deleted).sum()),
        "full_results_with_exclude": bool((excluded >= 0).all()),
        "latency": lat_plain, "latency_exclude": lat_excl,
        "exclude_p50_ratio": round(lat_excl["p50_ms"] / max(lat_plain["p50_ms"], 1e-9), 3),
        "anon_bytes_before": before["anonymous"], "anon_bytes_after": after["anonymous"],
        "anon_delta_bytes_per_passage": round((after["anonymous"] - before["anonymous"]) / n, 2),
        "file_backed_bytes_after": after["file_backed"],
        "file_backed_delta_bytes_per_passage": round((after["file_backed"] - before["file_backed"]) / n, 2),
        "file_rss_codes_bytes": by_file[".ivfdata"], "file_rss_vectors_bytes": by_file[".f16.npy"],
        "file_rss_tombstones_bytes": by_file[".u8"],
        "index_memory_bytes": index.memory_bytes(), "nlist": int(searcher.nlist), "m": int(searcher.pq.M),
        "coarse_ms": round(coarse_ms, 4), "mean_list_size": round(n / int(searcher.nlist), 1),
    }


def stage_sweep(d: Path, nq: int, grid: str) -> dict[str, Any]:
    """recall@10 and one-core CPU p50/p99 of every nprobe x rescore pair in one process (no exclusion).

    ``grid``: "NPROBES:RESCORES", e.g. "16,32,64:200,1000". One index load; the pairs run in order,
    each after 10 warm-up queries. Memory is left to the serve stage.
    """
    import faiss

    from datastore.config import DatastoreConfig
    from datastore.index.ivfpq import plan_nprobe
    from datastore.index.registry import load_index
    from datastore.part_vectors import PartVectors

    faiss.omp_set_num_threads(1)
    q = np.load(d / "queries.npy")[:nq]
    truth = np.load(d / "truth.npy")[:nq]
    sources = open_parts(d)
    index = load_index(d / "index", int(q.shape[1]), DatastoreConfig(), vectors=PartVectors(sources))
    probes, rescores = ([int(x) for x in part.split(",")] for part in grid.split(":"))
    rows = []
    for nprobe in probes:
        for rescore in rescores:
            index.config = index.config.model_copy(update={"nprobe": nprobe, "rescore": rescore})
            for x in q[:10]:
                index.search(x[None], K)
            cpu, found = np.empty(len(q)), np.empty((len(q), K), np.int64)
            for i, x in enumerate(q):
                c = time.thread_time()
                found[i] = index.search(x[None], K)[1][0]
                cpu[i] = time.thread_time() - c
            rec = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True)]))
            rows.append({"nprobe": nprobe, "nprobe_used": plan_nprobe(int(index._ready().nlist), index.config),
                         "rescore": rescore, "recall_at_10": round(rec, 4),
                         "p50_ms": round(float(np.percentile(cpu, 50)) * 1000, 3),
                         "p99_ms": round(float(np.percentile(cpu, 99)) * 1000, 3), "load": load()})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"nlist": int(index._ready().nlist), "queries": len(q), "rows": rows}


# -- driver -------------------------------------------------------------------------------------
def child(stage: str, args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    """Run ``stage`` in a fresh interpreter; returns its JSON result."""
    out = args.dir / f"{stage}.json"
    cmd = [sys.executable, __file__, "--stage", stage, "--dir", str(args.dir), "--n", str(args.n),
           "--dim", str(args.dim), "--parts", str(args.parts), "--queries", str(args.queries), "--data", args.data,
           "--memory-mb", str(args.memory_mb), "--threads", str(args.threads),
           "--nprobe", str(kw.get("nprobe", 0)), "--rescore", str(kw.get("rescore", 1000)), "--sweep", args.sweep]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    res: dict[str, Any] = json.loads(out.read_text())
    res["stage_wall_s"] = round(time.perf_counter() - t, 1)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--deleted", type=float, default=0.01, help="fraction of ids tombstoned")
    ap.add_argument("--memory-mb", type=int, default=2048, help="datastore.build_memory_mb")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="FAISS threads while building")
    ap.add_argument("--nprobe", type=int, default=0)
    ap.add_argument("--rescore", type=int, default=1000)
    ap.add_argument("--settings", default="0:1000,64:1000,64:200,64:500", help="nprobe:rescore pairs served (nprobe 0: auto)")
    ap.add_argument("--data", default="clustered", choices=["clustered", "release"],
                    help="clustered: this file's anisotropic clusters; release: bench/synthetic_release.py's vectors "
                    "(topic + paper + noise, as bench/scale_sim.py serves them)")
    ap.add_argument("--sweep", default="", help="NPROBES:RESCORES grid measured in one process (recall, CPU p50/p99), "
                    "e.g. 16,32,64,128:200,500,1000; before the serve settings")
    ap.add_argument("--dir", type=Path, default=Path("/work/tmp-ds-index/global"))
    ap.add_argument("--stage", default="")
    ap.add_argument("--skip", default="", help="comma list of stages already done (gen,truth,build)")
    ap.add_argument("--clean", action="store_true", help="delete --dir at the end")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)

    if args.stage:
        gen = stage_gen_release if args.data == "release" else stage_gen
        fn = {"gen": lambda: gen(args.dir, args.n, args.dim, args.parts, args.queries, args.deleted),
              "truth": lambda: stage_truth(args.dir),
              "build": lambda: stage_build(args.dir, args.memory_mb, args.threads),
              "serve": lambda: stage_serve(args.dir, args.queries, args.nprobe, args.rescore),
              "sweep": lambda: stage_sweep(args.dir, args.queries, args.sweep)}[args.stage]
        res = {"load_before": load(), **fn(), "load_after": load()}
        (args.dir / f"{args.stage}.json").write_text(json.dumps(res, indent=1))
        return 0

    out = args.out or REPO / "bench" / "results" / f"index_global_{args.n}.json"
    results: dict[str, Any] = {"n": args.n, "dim": args.dim, "parts": args.parts, "deleted_fraction": args.deleted, "data": args.data,
                               "machine": {"cpus": os.cpu_count(), "load_at_start": load()}, "k": K,
                               "latency": "p50/p99 = the searching thread's CPU time (one FAISS thread); wall_* include waiting for a core"}
    skip = set(filter(None, args.skip.split(",")))
    for stage in ("gen", "truth", "build"):
        if stage in skip:
            results[stage] = json.loads((args.dir / f"{stage}.json").read_text())
        else:
            print(f"== {stage} (load {load()})", flush=True)
            results[stage] = child(stage, args)
        print(json.dumps(results[stage]), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    if args.sweep:
        print(f"== sweep {args.sweep} (load {load()})", flush=True)
        results["sweep"] = child("sweep", args)
        out.write_text(json.dumps(results, indent=1))
    results["serve"] = []
    for pair in filter(None, args.settings.split(",")):
        nprobe, rescore = (int(x) for x in pair.split(":"))
        print(f"== serve nprobe={nprobe} rescore={rescore} (load {load()})", flush=True)
        r = child("serve", args, nprobe=nprobe, rescore=rescore)
        results["serve"].append(r)
        print(json.dumps(r), flush=True)
        out.write_text(json.dumps(results, indent=1))
    results["machine"]["load_at_end"] = load()
    out.write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"wrote {out}")
    from bench.projection import project_global

    project_global(results, out.parent / "projection_global.json")
    if args.clean:
        shutil.rmtree(args.dir, ignore_errors=True)
    return 0


def print_table(r: dict[str, Any]) -> None:
    b = r["build"]
    print(f"\nglobal IVF-PQ, n={r['n']:,} x {r['dim']}-d fp16, nlist={b['nlist']} m={b['m']}: build {b['build_s']}s "
          f"(train {b['train_s']}s, add {b['add_s']}s, merge {b['save_merge_s']}s), peak RSS "
          f"{b['peak_rss_bytes_per_passage']} B/passage (anonymous {b.get('peak_anon_bytes_per_passage')}), index {b['index_disk_bytes_per_passage']} B/passage on disk")
    print(f"exact baseline: {r['truth']['exact_ms_per_query_batched_all_cores']} ms/query (batched, all cores)")
    if "sweep" in r:
        print(f"sweep (one process, no exclusion, nlist {r['sweep']['nlist']}): nprobe rescore R@10 p50 p99 (CPU ms)")
        for row in r["sweep"]["rows"]:
            print(f"{row['nprobe']:>6} {row['rescore']:>7} {row['recall_at_10']:>6} {row['p50_ms']:>7} {row['p99_ms']:>7}")
    print(f"{'nprobe':>6} {'rescore':>7} {'R@10':>6} {'R@10x':>6} {'p50':>7} {'p99':>7} {'p50x':>7} {'p99x':>7} {'anonB/p':>8} {'fileB/p':>8}")
    for s in r["serve"]:
        print(f"{s['nprobe']:>6} {s['rescore']:>7} {s['recall_at_10']:>6} {s['recall_at_10_excluding']:>6} "
              f"{s['latency']['p50_ms']:>7} {s['latency']['p99_ms']:>7} {s['latency_exclude']['p50_ms']:>7} "
              f"{s['latency_exclude']['p99_ms']:>7} {s['anon_delta_bytes_per_passage']:>8} {s['file_backed_delta_bytes_per_passage']:>8}")


if __name__ == "__main__":
    raise SystemExit(main())
