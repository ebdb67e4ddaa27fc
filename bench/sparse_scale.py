"""Sparse retrieval at scale: bm25s segments (memory-mapped) and Lucene on synthetic passages.

For each N (default 200k and 1M passages) and backend: build time and peak RSS, disk bytes per
passage, resident memory while serving split into anonymous (heap, what each replica pays) and
file-backed (the page cache of mapped index files, shared), query latency p50/p99 pinned to one
core, per-query scratch memory (bm25s: numpy's traced peak), and the cost of adding 1% more
passages as a ratio to the full build. At the smallest N the previous backend (one in-memory
bm25s index, loaded without mmap) is measured as the baseline.

Passages are synthetic but shaped like peS2o's: ~256 words (normal, sd 40) drawn from a Zipfian
(s=1.07) vocabulary of 1M syllable-built words; queries are 4-12 words from the same law above
rank 100 (content words). Each phase runs in its own process (clean RSS), under ``nice -n 15``;
the load average is recorded next to every figure.

Run: nice -n 15 python bench/sparse_scale.py [--sizes 200000 1000000] [--scratch /work/tmp-ds-sparse/bench]
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "sparse_scale.json"
VOCAB = 1_000_000
ZIPF_S = 1.07
BLOCK = 10_000  # passages generated per seed block (the corpus is the same whichever process makes it)
SYLLABLES = [c + v for c in "bcdfghklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou", "ia")] + ["ex", "in", "ol", "ur", "an"]


# -- synthetic corpus ---------------------------------------------------------------------------
def vocabulary() -> np.ndarray:
    rng = np.random.default_rng(7)
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < VOCAB:
        n = rng.integers(2, 6, size=VOCAB)
        picks = rng.integers(0, len(SYLLABLES), size=(VOCAB, 5))
        for k, row in zip(n, picks, strict=True):
            w = "".join(SYLLABLES[i] for i in row[:k])
            if w not in seen:
                seen.add(w)
                words.append(w)
                if len(words) == VOCAB:
                    break
    return np.asarray(words, dtype=object)


def _cdf() -> np.ndarray:
    p = 1.0 / np.arange(1, VOCAB + 1) ** ZIPF_S
    return np.cumsum(p / p.sum())


def corpus(start: int, stop: int, words: np.ndarray, cdf: np.ndarray) -> Iterator[tuple[int, str]]:
    """Passages ``start <= id < stop`` (deterministic per block of ids)."""
    for block in range(start // BLOCK, (stop + BLOCK - 1) // BLOCK):
        rng = np.random.default_rng(1000 + block)
        lengths = np.clip(rng.normal(256, 40, size=BLOCK).astype(int), 40, 400)
        ranks = np.searchsorted(cdf, rng.random(int(lengths.sum())))
        ends = np.cumsum(lengths)
        for j in range(BLOCK):
            pid = block * BLOCK + j
            if start <= pid < stop:
                yield pid, " ".join(words[ranks[ends[j] - lengths[j] : ends[j]]])


def queries(n: int, words: np.ndarray, cdf: np.ndarray) -> list[str]:
    rng = np.random.default_rng(99)
    tail = cdf[100:] - cdf[99]
    tail /= tail[-1]
    return [" ".join(words[100 + np.searchsorted(tail, rng.random(rng.integers(4, 13)))]) for _ in range(n)]


# -- measurement helpers --------------------------------------------------------------------------
def memory() -> dict[str, int]:
    """Resident bytes of this process from /proc/self/smaps_rollup: anonymous vs file-backed."""
    out: dict[str, int] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0]) * 1024
    return {"rss": out.get("Rss", 0), "anonymous": out.get("Anonymous", 0), "file": out.get("Rss", 0) - out.get("Anonymous", 0)}


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load() -> float:
    return round(os.getloadavg()[0], 2)


def disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _sparse_config(**kw: Any) -> Any:
    from retriever.config import SparseConfig

    return SparseConfig(**kw)


# -- phases (each in its own process) ------------------------------------------------------------
def phase_build(backend: str, directory: Path, start: int, stop: int, append: bool) -> dict[str, Any]:
    words, cdf = vocabulary(), _cdf()
    docs = corpus(start, stop, words, cdf)
    t0 = time.perf_counter()
    load0 = load()
    if backend == "bm25s":
        from retriever.sparse.bm25s_backend import write_segments

        directory.mkdir(parents=True, exist_ok=True)
        names = write_segments(directory, docs, _sparse_config(backend="bm25s"), start, stop)
        n = len(names)
    elif backend == "lucene":
        from retriever.sparse.lucene_backend import index_docs

        n = index_docs(directory / "index", docs, threads=2, create=not append)
    elif backend == "bm25s-direct":  # the same index, postings made from word ranks (no text, no tokenizer)
        n = _direct_segments(directory, start, stop, words, cdf)
    else:  # bm25s-plain: the previous backend, one in-memory bm25s index over everything
        import bm25s
        import Stemmer

        texts = [t for _, t in docs]
        model = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
        model.index(bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False), show_progress=False)
        model.save(str(directory), show_progress=False)
        n = 1
    return {"seconds": round(time.perf_counter() - t0, 2), "peak_rss": peak_rss(), "load": [load0, load()], "parts": n}


def _direct_segments(directory: Path, start: int, stop: int, words: np.ndarray, cdf: np.ndarray) -> int:
    """bm25s segments of the synthetic corpus built straight from its word ranks (the words'
    hashes, no stemming): the index `write_segments` would make, without the tokenizer's CPU."""
    from retriever.sparse import segments as seg

    hashes = seg.term_hashes(list(words))
    size = 65_536
    directory.mkdir(parents=True, exist_ok=True)
    writer, seg_start, parts = seg.SegmentWriter(), start, 0

    def close(seg_stop: int) -> None:
        nonlocal writer, seg_start, parts
        if writer.n_docs:
            writer.write(directory / f"seg-{seg_start:012d}-{seg_stop:012d}", start=seg_start, stop=seg_stop)
            parts += 1
        writer, seg_start = seg.SegmentWriter(), seg_stop

    for block in range(start // BLOCK, (stop + BLOCK - 1) // BLOCK):
        rng = np.random.default_rng(1000 + block)
        lengths = np.clip(rng.normal(256, 40, size=BLOCK).astype(int), 40, 400)
        ranks = np.searchsorted(cdf, rng.random(int(lengths.sum())))
        ends = np.cumsum(lengths)
        ids = np.arange(block * BLOCK, (block + 1) * BLOCK)
        lo = 0
        while lo < BLOCK:
            room = size - writer.n_docs
            hi = min(BLOCK, lo + room)
            keep = (ids[lo:hi] >= start) & (ids[lo:hi] < stop)
            if keep.any():
                a, b = lo + int(np.argmax(keep)), lo + len(keep) - int(np.argmax(keep[::-1]))
                writer.add_flat(ids[a:b], lengths[a:b], ranks[ends[a] - lengths[a] : ends[b - 1]], hashes)
            lo = hi
            if writer.n_docs >= size:
                close(int(ids[hi - 1]) + 1)
    close(stop)
    return parts


def phase_serve(backend: str, directory: Path, n: int, n_queries: int) -> dict[str, Any]:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, the JVM's threads too
    words, cdf = vocabulary(), _cdf()
    qs = queries(n_queries + 20, words, cdf)
    del words, cdf
    import gc

    gc.collect()
    # Imports (and the JVM) come before the baseline: what is measured is what the index costs.
    import bm25s
    import Stemmer

    from retriever.sparse import segments as seg
    from retriever.sparse.bm25s_backend import _stemmer, open_segments

    if backend == "lucene":
        from retriever.sparse.lucene_backend import _autoclass, open_searcher, search_index

        _autoclass("java.lang.String")  # start the JVM before the baseline
    gc.collect()
    before = memory()
    t0 = time.perf_counter()
    if backend in ("bm25s", "bm25s-direct"):
        names = sorted(p.name for p in directory.iterdir() if p.name.startswith("seg-"))
        segments, n_live, avgdl = open_segments(directory, names, np.zeros(0, dtype=np.int64))
        stem = _stemmer("english") if backend == "bm25s" else None
        stop_words = "en" if backend == "bm25s" else None

        def run(q: str) -> int:
            t = seg.query_terms([q], stopwords=stop_words, stemmer=stem)[0]
            return len(seg.search(segments, t, 10, n_live=n_live, avgdl=avgdl, k1=1.5, b=0.75))

    elif backend == "lucene":
        searcher = open_searcher(directory / "index", 0.9, 0.4)

        def run(q: str) -> int:
            return len(search_index(searcher, [q], 10)[0])

    else:
        model = bm25s.BM25.load(str(directory), mmap=False, show_progress=False)
        stem = Stemmer.Stemmer("english")

        def run(q: str) -> int:
            toks = bm25s.tokenize([q], stopwords="en", stemmer=stem, return_ids=False, show_progress=False)[0]
            toks = [t for t in toks if t in model.vocab_dict]
            if not toks:
                return 0
            docs, _ = model.retrieve([toks], k=10, show_progress=False, n_threads=1)
            return int(docs.shape[1])

    open_s = time.perf_counter() - t0
    for q in qs[:20]:
        run(q)
    lat = []
    load0 = load()
    for q in qs[20:]:
        t = time.perf_counter()
        run(q)
        lat.append((time.perf_counter() - t) * 1000)
    serving = memory()
    scratch = None
    if backend != "lucene":  # numpy's allocations per query, traced (slower, so after the timing)
        import tracemalloc

        tracemalloc.start()
        peaks = []
        for q in qs[20:70]:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            run(q)
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
        tracemalloc.stop()
        scratch = {"p50": int(np.percentile(peaks, 50)), "max": int(max(peaks))}
    lat_a = np.asarray(lat)
    return {
        "open_s": round(open_s, 3),
        "p50_ms": round(float(np.percentile(lat_a, 50)), 2),
        "p99_ms": round(float(np.percentile(lat_a, 99)), 2),
        "queries": len(lat),
        "before": before,
        "serving": serving,
        "anon_delta": serving["anonymous"] - before["anonymous"],
        "query_scratch_bytes": scratch,
        "load": [load0, load()],
    }


def _child(*args: str, script: str = __file__) -> dict[str, Any]:
    """Run ``script`` (this bench by default) with ``args`` in a fresh process; its last stdout line as JSON."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(backend: str, n: int, scratch: Path, n_queries: int) -> dict[str, Any]:
    directory = scratch / f"{backend}-{n}"
    shutil.rmtree(directory, ignore_errors=True)
    print(f"[{time.strftime('%H:%M:%S')}] {backend} N={n}: build", flush=True)
    build = _child("build", backend, str(directory), "0", str(n))
    size = disk(directory)
    print(f"[{time.strftime('%H:%M:%S')}] {backend} N={n}: serve ({build['seconds']} s build)", flush=True)
    serve = _child("serve", backend, str(directory), str(n), str(n_queries))
    row: dict[str, Any] = {"backend": backend, "n": n, "build": build, "disk_bytes": size, "disk_B_per_passage": round(size / n, 1), "serve": serve}
    row["anon_B_per_passage"] = round(serve["anon_delta"] / n, 2)
    if backend != "bm25s-plain":
        add = max(n // 100, 1)
        print(f"[{time.strftime('%H:%M:%S')}] {backend} N={n}: add 1%", flush=True)
        row["add_1pct"] = _child("build", backend, str(directory), str(n), str(n + add), "append")
        row["add_1pct_vs_rebuild"] = round(row["add_1pct"]["seconds"] / build["seconds"], 4)
    shutil.rmtree(directory, ignore_errors=True)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = "| backend | N | build s | build peak RSS MB | disk B/passage | anon RSS B/passage (serving) | file RSS MB | p50 ms | p99 ms | query scratch KB (p50/max) | add 1% / rebuild | load |"
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        s = r["serve"]
        scratch = s["query_scratch_bytes"]
        sc = f"{scratch['p50'] // 1024}/{scratch['max'] // 1024}" if scratch else "n/a (JVM)"
        add = f"{r['add_1pct_vs_rebuild']:.3f}" if "add_1pct_vs_rebuild" in r else "-"
        lines.append(
            f"| {r['backend']} | {r['n']:,} | {r['build']['seconds']} | {r['build']['peak_rss'] // 2**20} | {r['disk_B_per_passage']} | "
            f"{r['anon_B_per_passage']} | {s['serving']['file'] // 2**20} | {s['p50_ms']} | {s['p99_ms']} | {sc} | {add} | {s['load'][1]} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--backends", nargs="+", default=["bm25s", "lucene"])
    ap.add_argument("--baseline-at", type=int, default=200_000, help="also measure bm25s-plain at this N (0: never)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--scratch", type=Path, default=Path("/work/tmp-ds-sparse/bench"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rows: list[dict[str, Any]] = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    for n in args.sizes:
        backends = list(args.backends) + (["bm25s-plain"] if n == args.baseline_at else [])
        for backend in backends:
            rows = [r for r in rows if (r["backend"], r["n"]) != (backend, n)] + [measure(backend, n, args.scratch, args.queries)]
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"cpu": os.cpu_count(), "rows": rows}, indent=2))
            print(table(rows), flush=True)
    shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("build", "serve"):
        cmd, backend, directory = sys.argv[1], sys.argv[2], Path(sys.argv[3])
        if cmd == "build":
            res = phase_build(backend, directory, int(sys.argv[4]), int(sys.argv[5]), append=len(sys.argv) > 6)
        else:
            res = phase_serve(backend, directory, int(sys.argv[4]), int(sys.argv[5]))
        print(json.dumps(res))
    else:
        main()
