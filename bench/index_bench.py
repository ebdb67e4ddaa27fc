"""Vector index benchmark: flat vs IVF-PQ (+ exact re-scoring from memory-mapped fp16) vs HNSW.

For each dataset (1M synthetic clustered 384-d vectors; the real SciFact vectors of the default
datastore with SciFact test claims as queries) it reports build time, bytes per vector in RAM,
single-query p50/p99 latency on ONE thread (faiss.omp_set_num_threads(1)) and recall@10 against
exact search, using the project's own index classes (datastore/index/). Then it projects the
measured figures to 237M passages (see bench/projection.py). The global IVF-PQ path at 768-d
(parts on disk, bounded-RAM build, anonymous vs mapped RAM while serving, exclusion bitmap) is
measured by bench/index_global.py.

    nice -n 10 .venv/bin/python bench/index_bench.py                      # full run (~15-25 min)
    nice -n 10 .venv/bin/python bench/index_bench.py --n 100000 --hnsw-n 100000   # quick look

Writes bench/results/index_bench.json and bench/results/projection.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datastore.config import DatastoreConfig, HNSWConfig, IVFPQConfig
from datastore.index.build import build_index
from datastore.index.flat import FlatIndex
from datastore.index.hnsw import HNSWIndex
from datastore.index.registry import load_index
from datastore.part_vectors import PartVectors

SCIFACT = REPO.parent / "shared" / "data" / "beir" / "scifact"
DEFAULT_DATASTORE = REPO / ".cache" / "openscholar" / "datastore"
K = 10


# -- data ---------------------------------------------------------------------------------------
def synthetic(n: int, nq: int, dim: int = 384, centers: int = 4096, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered, anisotropic vectors shaped like MiniLM passage embeddings.

    A Gaussian mixture of ``centers`` components in a randomly rotated space whose variance
    spectrum decays as (i+1)^-0.87 and whose mean has norm 0.33: both fitted to the SciFact
    vectors of the default datastore (isotropic noise would make every neighbour equidistant,
    which no real embedding space does). 75% of the variance is between clusters. Queries are
    held-out draws from the same mixture. Rows are L2-normalized float32.
    """
    rng = np.random.default_rng(seed)
    rot, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    spectrum = (np.arange(dim) + 1.0) ** -0.87
    spectrum *= 0.89 / spectrum.sum()  # total variance of the real vectors
    scale = (np.sqrt(spectrum)[:, None] * rot.T).astype(np.float32)  # z @ scale ~ N(0, R diag(s) R^T)
    mean = rng.standard_normal(dim).astype(np.float32)
    mean *= 0.33 / np.linalg.norm(mean)
    mu = mean + np.sqrt(0.75) * rng.standard_normal((centers, dim)).astype(np.float32) @ scale
    total = n + nq
    out = np.empty((total, dim), dtype=np.float32)
    step = 200_000
    for s in range(0, total, step):
        e = min(total, s + step)
        comp = rng.integers(0, centers, e - s)
        x = mu[comp] + np.sqrt(0.25) * rng.standard_normal((e - s, dim)).astype(np.float32) @ scale
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:e] = x
    return out[:n], out[n:]


def scifact_real(datastore: Path, max_queries: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The default datastore's vectors and SciFact test claims encoded with the packaged embedder."""
    from datastore.datastore import Datastore
    from retriever.st_embedder import SentenceTransformerEmbedder

    ds = Datastore.open(datastore)
    if hasattr(ds, "shards"):  # format 1: one index per shard
        base = np.concatenate([np.asarray(s.vectors, dtype=np.float32) for s in ds.shards])
    else:  # format 2 (ds-store): parts + one global index; ids 0..next_id-1
        base = np.asarray(ds.vectors(np.arange(ds.next_id, dtype=np.int64)), dtype=np.float32)
    qids = {line.split("\t")[0] for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    claims = [
        json.loads(line)["text"]
        for line in (SCIFACT / "queries.jsonl").read_text().splitlines()
        if line.strip() and json.loads(line)["_id"] in qids
    ][:max_queries]
    queries = SentenceTransformerEmbedder().encode_queries(claims).vectors
    desc = f"{ds.root} ({len(base)} passages: SciFact + ScholarQABench contexts), {len(claims)} SciFact test claims"
    ds.close()
    return base, np.ascontiguousarray(queries, dtype=np.float32), desc


# -- measuring ----------------------------------------------------------------------------------
def exact_top(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    _, ids = index.search(queries, k)
    faiss.omp_set_num_threads(1)
    return ids


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = K) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth, strict=True)]))


def single_query(index: Any, queries: np.ndarray, k: int = K) -> tuple[np.ndarray, dict[str, float]]:
    """Queries one at a time on one thread; returns ids and latency percentiles in ms.

    Wall time and this thread's CPU time are both kept: on a machine shared with other jobs the
    wall time includes waiting for a core, the CPU time is what one core spends on the query.
    """
    faiss.omp_set_num_threads(1)
    for q in queries[:5]:  # warm caches
        index.search(q[None], k)
    ids = np.empty((len(queries), k), dtype=np.int64)
    wall = np.empty(len(queries))
    cpu = np.empty(len(queries))
    for i, q in enumerate(queries):
        c = time.thread_time()
        t = time.perf_counter()
        _, found = index.search(q[None], k)
        wall[i] = time.perf_counter() - t
        cpu[i] = time.thread_time() - c
        ids[i] = found[0]
    w, c = wall * 1000, cpu * 1000
    return ids, {"p50_ms": float(np.percentile(c, 50)), "p99_ms": float(np.percentile(c, 99)), "mean_ms": float(c.mean()),
                 "wall_p50_ms": float(np.percentile(w, 50)), "wall_p99_ms": float(np.percentile(w, 99))}


def row(name: str, params: dict, build_s: float | None, ram: int, n: int, ids: np.ndarray, lat: dict, truth: np.ndarray,
        disk_bytes: int | None = None) -> dict[str, Any]:
    return {
        "index": name,
        "params": params,
        "n": n,
        "build_s": None if build_s is None else round(build_s, 2),
        "ram_bytes_per_vector": round(ram / n, 2),
        "disk_bytes_per_vector": None if disk_bytes is None else round(disk_bytes / n, 2),
        "recall_at_10": round(recall_at_k(ids, truth), 4),
        **{k: round(v, 4) for k, v in lat.items()},
    }


def bench_dataset(name: str, base: np.ndarray, queries: np.ndarray, args: argparse.Namespace, workdir: Path) -> dict:
    n, dim = base.shape
    print(f"\n== {name}: {n} x {dim}, {len(queries)} queries", flush=True)
    truth = exact_top(base, queries, K)
    rows: list[dict] = []
    faiss.omp_set_num_threads(args.build_threads)

    # flat (exact): the reference's index
    t = time.perf_counter()
    flat = FlatIndex(dim)
    flat.build(base)
    build = time.perf_counter() - t
    nq_flat = min(len(queries), args.flat_queries)
    ids, lat = single_query(flat, queries[:nq_flat])
    rows.append(row("flat", {}, build, flat.memory_bytes(), n, ids, lat, truth[:nq_flat]))
    print_row(rows[-1])
    del flat
    gc.collect()

    # IVF-PQ with exact re-scoring from a memory-mapped fp16 file (the global index's API:
    # trained once on a sample, added in batches, lists on disk, loaded mapped)
    f16 = workdir / f"{name}.vectors.f16.npy"
    np.save(f16, base.astype(np.float16))
    mm = np.load(f16, mmap_mode="r")
    faiss.omp_set_num_threads(args.build_threads)
    cfg = IVFPQConfig()
    built = (args.cache_dir / f"{name}-{n}") if args.cache_dir else workdir / f"{name}-ivfpq"
    if (built / "index.json").exists():  # a rerun reuses the (slow, deterministic) build
        build = json.loads((built / "build.json").read_text())["build_s"]
    else:
        t = time.perf_counter()
        build_index([(0, mm)], DatastoreConfig(ivfpq=cfg), kind="ivfpq", directory=built, workdir=workdir / "ivf-work")
        build = time.perf_counter() - t
        (built / "build.json").write_text(json.dumps({"build_s": build}))
    ivf = load_index(built, dim, DatastoreConfig(ivfpq=cfg), vectors=PartVectors([(0, mm)]))
    ivf_struct = ivf._ready()
    index_file = sum(f.stat().st_size for f in built.iterdir() if f.name != "build.json")
    disk = index_file + f16.stat().st_size
    nlist = int(ivf_struct.nlist)
    m = int(ivf_struct.pq.M)
    print(f"   ivfpq built in {build:.1f}s: nlist={nlist} m={m} (defaults: {cfg.model_dump()})", flush=True)
    # coarse-quantizer cost alone, for the projection
    faiss.omp_set_num_threads(1)
    qz = ivf_struct.quantizer
    t = time.thread_time()
    for q in queries[:200]:
        qz.search(q[None], 32)
    coarse_ms = (time.thread_time() - t) / min(200, len(queries)) * 1000
    sizes = np.array([ivf_struct.invlists.list_size(i) for i in range(nlist)])
    for nprobe in args.nprobe:
        for rescore in args.rescore:
            ivf.config = cfg.model_copy(update={"nprobe": nprobe, "rescore": rescore})
            ids, lat = single_query(ivf, queries)
            r = row("ivfpq", {"nlist": nlist, "m": m, "nprobe": nprobe, "rescore": rescore},
                    build, ivf.memory_bytes(), n, ids, lat, truth, disk_bytes=disk)
            r["is_default"] = nprobe == cfg.nprobe and rescore == cfg.rescore
            rows.append(r)
            print_row(r)
    ivf_meta = {"nlist": nlist, "coarse_ms_per_query": round(coarse_ms, 4),
                "mean_list_size": float(sizes.mean()), "index_file_bytes": index_file,
                "f16_file_bytes": f16.stat().st_size}
    del ivf, ivf_struct, qz, mm
    gc.collect()
    f16.unlink()

    # HNSW (capped size: the build is the slow part on a small machine)
    hn = min(n, args.hnsw_n)
    hbase = base[:hn]
    htruth = truth if hn == n else exact_top(hbase, queries, K)
    faiss.omp_set_num_threads(args.build_threads)
    hcfg = HNSWConfig()
    t = time.perf_counter()
    hnsw = HNSWIndex(dim, hcfg)
    hnsw.build(hbase)
    build = time.perf_counter() - t
    print(f"   hnsw built on {hn} in {build:.1f}s (M={hcfg.m}, efConstruction={hcfg.ef_construction})", flush=True)
    for ef in args.ef_search:
        view = HNSWIndex(dim, hcfg.model_copy(update={"ef_search": ef}), index=hnsw.index)
        ids, lat = single_query(view, queries)
        r = row("hnsw", {"M": hcfg.m, "ef_construction": hcfg.ef_construction, "ef_search": ef}, build,
                view.memory_bytes(), hn, ids, lat, htruth)
        r["is_default"] = ef == hcfg.ef_search
        rows.append(r)
        print_row(r)
    del hnsw, view
    gc.collect()
    return {"name": name, "n": n, "dim": dim, "queries": len(queries), "rows": rows, "ivfpq": ivf_meta}


def print_row(r: dict) -> None:
    p = ",".join(f"{k}={v}" for k, v in r["params"].items())
    print(
        f"  {r['index']:6s} {p:44s} n={r['n']:>8d} build={r['build_s'] or 0:7.1f}s "
        f"RAM={r['ram_bytes_per_vector']:7.1f}B/v  cpu p50={r['p50_ms']:7.3f}ms p99={r['p99_ms']:7.3f}ms "
        f"(wall {r['wall_p50_ms']:.3f}/{r['wall_p99_ms']:.3f}) "
        f"R@10={r['recall_at_10']:.4f}",
        flush=True,
    )


def best_config(rows: list[dict], max_bytes: float = 64, min_recall: float = 0.98, max_p50: float = 2.0) -> dict | None:
    ok = [r for r in rows if r["ram_bytes_per_vector"] <= max_bytes and r["recall_at_10"] >= min_recall
          and r["p50_ms"] <= max_p50]
    return min(ok, key=lambda r: r["p50_ms"]) if ok else None


def _save(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic base vectors")
    ap.add_argument("--queries", type=int, default=1000, help="synthetic held-out queries")
    ap.add_argument("--flat-queries", type=int, default=100, help="queries timed on the (slow) flat index")
    ap.add_argument("--hnsw-n", type=int, default=1_000_000, help="cap on vectors for the HNSW build")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--rescore", type=int, nargs="+", default=[0, 50, 100, 200])
    ap.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--build-threads", type=int, default=os.cpu_count() or 1, help="FAISS threads for builds")
    ap.add_argument("--cache-dir", type=Path, default=None, help="keep IVF-PQ builds here and reuse them")
    ap.add_argument("--datastore", type=Path, default=DEFAULT_DATASTORE, help="datastore whose vectors are the real set")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "index_bench.json")
    args = ap.parse_args(argv)

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "faiss": faiss.__version__,
                    "load_avg_at_start": os.getloadavg()},
        "search_threads": 1,
        "latency": "p50_ms/p99_ms are the searching thread's CPU time per query; wall_* include waiting for a core",
        "k": K,
        "datasets": [],
    }
    with tempfile.TemporaryDirectory(prefix="index-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_real:
            base, queries, desc = scifact_real(args.datastore, 1000)
            d = bench_dataset("scifact", base, queries, args, work)
            d["description"] = desc
            results["datasets"].append(d)
            _save(results, args.out)  # partial results survive a later kill
        if not args.skip_synthetic:
            t = time.perf_counter()
            base, queries = synthetic(args.n, args.queries)
            print(f"synthetic data in {time.perf_counter() - t:.1f}s", flush=True)
            d = bench_dataset("synthetic", base, queries, args, work)
            d["description"] = (f"{args.n} synthetic 384-d vectors: Gaussian mixture of 4096 centres, spectrum "
                                f"fitted to MiniLM vectors, seed 0; {args.queries} held-out queries")
            results["datasets"].append(d)
            del base
    for d in results["datasets"]:
        d["meets_target"] = best_config(d["rows"])
        print(f"\n{d['name']}: best configuration meeting R@10>=0.98, <=64 B/vector, p50<=2 ms: {d['meets_target']}")
    results["load_avg_at_end"] = os.getloadavg()
    _save(results, args.out)
    print(f"wrote {args.out}")

    from bench.projection import project

    project(results, args.out.parent / "projection.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
