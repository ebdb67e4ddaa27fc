"""IVF-PQ short-list gather from fp16 vectors on disk: serial page faults vs reads queued at once.

At 237M passages the fp16 vectors (~364 GB) do not fit the page cache, so each query's re-scoring
reads ``rescore`` (1000) random rows from disk. This measures that gather alone on N synthetic
768-d fp16 rows in ``--parts`` memory-mapped ``.npy`` files (the datastore's layout, read through
``datastore.part_vectors.PartVectors``), per query of ``--rescore`` random sorted ids:

- ``serial``: ``rows(ids)``, the gather as it was (one page fault at a time, with the kernel's
  read-around on each);
- ``serial_random``: the same with ``MADV_RANDOM`` on the mappings (no read-around: the bare
  queue-depth-1 cost, for reference);
- ``prefetch``: ``prefetch(ids)`` (``MADV_WILLNEED`` per row: reads queued, not awaited) then
  ``rows(ids)``: the product path;
- ``fadvise``: the same with ``POSIX_FADV_WILLNEED`` per row on a file descriptor (the alternative
  to advising the mapping; needs one open descriptor per part);
- ``pread_T``: T threads ``os.preadv`` the rows straight into the output (the GIL is released in
  the read): the thread-pool alternative.

Cold: before each timed call every part's pages are dropped (``MADV_DONTNEED`` on our mappings, then
``POSIX_FADV_DONTNEED`` on the files); ``mincore`` confirms the files' residency before the call and
counts the pages the call brought in. Hot: the same call again right after. Variants rotate their
order per query, so load hits each alike; ratios are to ``serial`` in the same run. Every variant's
rows are checked equal to ``serial``'s. Prints a table and writes bench/results/rescore_io.json.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import mmap
import os
import platform
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np

from datastore.part_vectors import PartVectors

REPO = Path(__file__).resolve().parents[1]
LIBC = ctypes.CDLL(None, use_errno=True)


def make_parts(directory: Path, n: int, dim: int, parts: int) -> tuple[list[np.memmap], list[int]]:
    """``parts`` fp16 .npy files of N(0, 1) rows (made once, reused), memory-mapped read-only."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays, starts, lo = [], [], 0
    for i, size in enumerate(np.diff(np.linspace(0, n, parts + 1).astype(np.int64))):
        path = directory / f"part-{i:03d}-{size}x{dim}.npy"
        if not path.exists():
            tmp = path.with_suffix(".tmp.npy")
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(int(size), dim))
            for a in range(0, int(size), 65536):
                b = min(int(size), a + 65536)
                out[a:b] = rng.standard_normal((b - a, dim), dtype=np.float32).astype(np.float16)
            out.flush()
            del out
            os.replace(tmp, path)
        arrays.append(cast(np.memmap, np.load(path, mmap_mode="r")))
        starts.append(lo)
        lo += int(size)
    return arrays, starts


def mapped(array: np.memmap) -> mmap.mmap:
    """The mapping behind a whole-file memmap (``np.load(..., mmap_mode='r')``)."""
    assert isinstance(array.base, mmap.mmap)
    return array.base


def mapping(array: np.memmap) -> tuple[int, int]:
    """(address, length) of the whole mapping behind a ``np.load(..., mmap_mode='r')`` array."""
    head = int(array.offset) % mmap.ALLOCATIONGRANULARITY
    return array.ctypes.data - head, head + array.nbytes


def resident_pages(arrays: list[np.memmap]) -> int:
    total = 0
    for a in arrays:
        addr, size = mapping(a)
        vec = (ctypes.c_ubyte * ((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE))()
        if LIBC.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        total += int((np.frombuffer(bytes(vec), dtype=np.uint8) & 1).sum())
    return total


def evict(arrays: list[np.memmap], fds: list[int]) -> None:
    for a, fd in zip(arrays, fds, strict=True):
        mapped(a).madvise(mmap.MADV_DONTNEED)  # our mapped pages: the kernel keeps mapped pages cached
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def pread_gather(vec: PartVectors, arrays: list[np.memmap], fds: list[int], pool: ThreadPoolExecutor, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """The thread-pool alternative: ``threads`` workers preadv rows of sorted ``ids`` into the output."""
    starts = np.asarray(vec.starts, dtype=np.int64)
    offsets = [int(a.offset) for a in arrays]
    row = vec.dim * 2

    def gather(ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(ids), vec.dim), dtype=np.float16)
        part = np.searchsorted(starts, ids, side="right") - 1
        pos = [offsets[p] + (int(g) - int(starts[p])) * row for p, g in zip(part.tolist(), ids.tolist(), strict=True)]

        def read(lo_hi: tuple[int, int]) -> None:
            for i in range(*lo_hi):
                os.preadv(fds[part[i]], [out[i]], pos[i])

        bounds = np.linspace(0, len(ids), threads + 1).astype(int)
        list(pool.map(read, [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]))
        return out

    return gather


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def device_info() -> str:
    try:
        out = subprocess.run(["lsblk", "-d", "-o", "NAME,ROTA,SIZE,MODEL"], check=False, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    return " | ".join(line.strip() for line in out.splitlines() if line.strip())


def read_ahead_kb(path: Path) -> int | None:
    """The block device's readahead for the file system holding ``path`` (what a page fault reads around)."""
    dev = os.stat(path).st_dev
    base = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    for q in (base / "queue" / "read_ahead_kb", base / ".." / "queue" / "read_ahead_kb"):
        try:
            return int(q.read_text())
        except (OSError, ValueError):
            continue
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--parts", type=int, default=2)
    ap.add_argument("--dir", default="/work/tmp-rescore-io")
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--rescore", type=int, default=1000)
    ap.add_argument("--threads", default="4,8,16,32")
    ap.add_argument("--hot-reps", type=int, default=300)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "rescore_io.json"))
    args = ap.parse_args()
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    arrays, starts = make_parts(Path(args.dir), args.n, args.dim, args.parts)
    gen_s = time.perf_counter() - t0
    vec = PartVectors(list(zip(starts, arrays, strict=True)), args.dim)
    fds = [os.open(str(a.filename), os.O_RDONLY) for a in arrays]
    threads = [int(t) for t in args.threads.split(",") if t]
    pool = ThreadPoolExecutor(max(threads, default=1))

    def serial_random(ids: np.ndarray) -> np.ndarray:
        for a in arrays:
            mapped(a).madvise(mmap.MADV_RANDOM)
        try:
            return vec.rows(ids)
        finally:
            for a in arrays:
                mapped(a).madvise(mmap.MADV_NORMAL)

    def prefetch(ids: np.ndarray) -> np.ndarray:
        vec.prefetch(ids)
        return vec.rows(ids)

    part_starts = np.asarray(starts, dtype=np.int64)

    def fadvise(ids: np.ndarray) -> np.ndarray:
        part = np.searchsorted(part_starts, ids, side="right") - 1
        for p, g in zip(part.tolist(), ids.tolist(), strict=True):
            os.posix_fadvise(fds[p], int(arrays[p].offset) + (g - starts[p]) * args.dim * 2, args.dim * 2, os.POSIX_FADV_WILLNEED)
        return vec.rows(ids)

    variants: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "serial": vec.rows, "serial_random": serial_random, "prefetch": prefetch, "fadvise": fadvise,
    }
    for nt in threads:
        variants[f"pread_{nt}"] = pread_gather(vec, arrays, fds, pool, nt)
    names = list(variants)
    cold: dict[str, list[float]] = {v: [] for v in names}
    hot: dict[str, list[float]] = {v: [] for v in names}
    pages: dict[str, list[int]] = {v: [] for v in names}
    before_max = 0
    rng = np.random.default_rng(1)
    total_pages = sum((mapping(a)[1] + mmap.PAGESIZE - 1) // mmap.PAGESIZE for a in arrays)
    for qi in range(args.queries):
        ids = np.sort(rng.choice(args.n, args.rescore, replace=False)).astype(np.int64)
        ref = None
        for name in names[qi % len(names) :] + names[: qi % len(names)]:
            fn = variants[name]
            evict(arrays, fds)
            before = resident_pages(arrays)
            before_max = max(before_max, before)
            t = time.perf_counter()
            got = fn(ids)
            cold[name].append(time.perf_counter() - t)
            pages[name].append(resident_pages(arrays) - before)
            t = time.perf_counter()
            fn(ids)
            hot[name].append(time.perf_counter() - t)
            if ref is None:
                ref = vec.rows(ids)
            if not np.array_equal(got, ref):
                raise SystemExit(f"{name} returned different rows than serial for query {qi}")
        print(f"query {qi + 1}/{args.queries}", end="\r", flush=True)
    # the advice's own cost when every row is cached (what prefetch adds to a hot query), interleaved
    ids = np.sort(rng.choice(args.n, args.rescore, replace=False)).astype(np.int64)
    vec.rows(ids)
    advice: dict[str, list[float]] = {"madvise": [], "fadvise": []}
    part = np.searchsorted(part_starts, ids, side="right") - 1
    for _ in range(args.hot_reps):
        t = time.perf_counter()
        vec.prefetch(ids)
        advice["madvise"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for p, g in zip(part.tolist(), ids.tolist(), strict=True):
            os.posix_fadvise(fds[p], int(arrays[p].offset) + (g - starts[p]) * args.dim * 2, args.dim * 2, os.POSIX_FADV_WILLNEED)
        advice["fadvise"].append(time.perf_counter() - t)
    evict(arrays, fds)
    load_end = os.getloadavg()
    base_cold, base_hot = np.median(cold["serial"]), np.median(hot["serial"])
    rows = {}
    for name in names:
        rows[name] = {
            "cold_p50_ms": pct(cold[name], 50), "cold_p99_ms": pct(cold[name], 99),
            "hot_p50_ms": pct(hot[name], 50), "hot_p99_ms": pct(hot[name], 99),
            "cold_p50_ratio_to_serial": float(np.median(cold[name]) / base_cold),
            "hot_p50_ratio_to_serial": float(np.median(hot[name]) / base_hot),
            "pages_read_per_query_mean": float(np.mean(pages[name])),
            "mb_read_per_query_mean": float(np.mean(pages[name]) * mmap.PAGESIZE / 2**20),
        }
    result: dict[str, Any] = {
        "n": args.n, "dim": args.dim, "parts": args.parts, "rescore": args.rescore, "queries": args.queries,
        "file_bytes": sum(Path(str(a.filename)).stat().st_size for a in arrays),
        "row_bytes": args.dim * 2, "generate_s": gen_s,
        "max_resident_pages_before_cold_call": before_max, "file_pages": total_pages,
        "load_avg_start": load_start, "load_avg_end": load_end, "cpus": os.cpu_count(),
        "device": device_info(), "read_ahead_kb": read_ahead_kb(Path(args.dir)), "kernel": platform.release(),
        "note": "this VM's disk is virtual (virtio vda); absolute figures depend on the device, ratios less so",
        "variants": rows,
        "advice_only_hot_p50_ms": {k: pct(v, 50) for k, v in advice.items()},
        "command": f"nice -n 10 python bench/rescore_io.py --n {args.n} --parts {args.parts} --queries {args.queries} --dir {args.dir}",
    }
    print(f"\n{args.n:,} x {args.dim} fp16 in {args.parts} parts ({result['file_bytes'] / 2**30:.2f} GiB), "
          f"{args.rescore} random rows per query, {args.queries} queries; load {load_start[0]:.1f} -> {load_end[0]:.1f}; "
          f"max resident pages before a cold call {before_max} of {total_pages}; device readahead {result['read_ahead_kb']} KB")
    print(f"{'variant':14s} {'cold p50':>9s} {'cold p99':>9s} {'hot p50':>8s} {'hot p99':>8s} {'cold/serial':>11s} {'hot/serial':>10s} {'MB read/q':>9s}")
    for name, r in rows.items():
        print(f"{name:14s} {r['cold_p50_ms']:9.2f} {r['cold_p99_ms']:9.2f} {r['hot_p50_ms']:8.3f} {r['hot_p99_ms']:8.3f} "
              f"{r['cold_p50_ratio_to_serial']:11.4f} {r['hot_p50_ratio_to_serial']:10.2f} {r['mb_read_per_query_mean']:9.2f}")
    print("advice alone, rows cached (p50 ms per query): " + ", ".join(f"{k} {pct(v, 50):.3f}" for k, v in advice.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    pool.shutdown()
    for fd in fds:
        os.close(fd)


if __name__ == "__main__":
    main()
