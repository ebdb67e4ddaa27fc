"""Datastore format 2 maintenance costs on synthetic parts: finalize vs add vs delete vs open.

Writes ``--parts`` parts of ``--n`` passages in all (short synthetic text, ~3% exact duplicates
spread across parts, clustered 384-d vectors) with `PartWriter`, then measures: finalize (dedup +
IVF-PQ train on a cross-part sample + streaming add + stamps), `add_parts` of one small part,
`tombstone_papers` of 10 papers, `Datastore.open` (stamps trusted) vs `verify="full"` (every file
re-hashed), one query. Costs that should be O(change) are reported as ratios to finalize.
Peak RSS is the process's (ru_maxrss). Writes bench/results/finalize_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from datastore.builder import tombstone_papers
from datastore.config import DatastoreConfig, IVFPQConfig
from datastore.datastore import Datastore
from datastore.finalize import add_parts, finalize
from datastore.manifest import EncoderInfo
from datastore.models import Passage
from datastore.parts import PartWriter, finished_parts, part_name

REPO = Path(__file__).resolve().parents[1]
DIM = 384


def write_part(root: Path, name: str, first: int, n: int, rng: np.random.Generator, centers: np.ndarray) -> None:
    with PartWriter(root, name, DIM) as w:
        for lo in range(0, n, 10_000):
            m = min(10_000, n - lo)
            gids = np.arange(first + lo, first + lo + m)
            # every 20th passage repeats an earlier one's text (a duplicate across parts)
            src = np.where(gids % 20 == 19, gids // 3, gids)
            passages = [Passage(-1, f"paper-{g // 4}", f"Title {s // 4}", f"synthetic passage number {s} " * 8)
                        for g, s in zip(gids.tolist(), src.tolist(), strict=True)]
            x = centers[rng.integers(0, len(centers), m)] + 0.35 * rng.normal(size=(m, DIM)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            w.write(passages, x)
        w.close()


class Clock:
    """Wall and CPU seconds of each step (CPU: this process, all threads; the machine is shared)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name: str):  # type: ignore[no-untyped-def]
        clock = self

        class _Step:
            def __enter__(self) -> None:
                self.t, self.c = time.perf_counter(), time.process_time()

            def __exit__(self, *exc: object) -> None:
                clock.wall[name] = time.perf_counter() - self.t
                clock.cpu[name] = time.process_time() - self.c

        return _Step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="finalize-bench-"))
    root = base / "ds"
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(256, DIM)).astype(np.float32)
    per = args.n // args.parts
    clock = Clock()
    with clock("write_parts"):
        for i in range(args.parts):
            write_part(root, part_name(i), i * per, per, rng, centers)
    enc = EncoderInfo(id="synthetic", dim=DIM, max_tokens=256)
    cfg = DatastoreConfig(index="ivfpq", ivfpq=IVFPQConfig(m=48, nprobe=32, rescore=100), build_memory_mb=256)
    with clock("finalize"):
        manifest = finalize(root, enc, cfg, progress=False)
    write_part(root, part_name(args.parts), args.parts * per, 1000, rng, centers)
    new = [p for p in finished_parts(root) if p.name == part_name(args.parts)]
    with clock("add_1000"):
        after_add = add_parts(root, new, cfg, progress=False)
    with clock("delete_10_papers"):
        tombstone_papers(root, [f"paper-{i}" for i in range(100, 110)])
    with clock("open_stamps"):
        ds = Datastore.open(root, config=cfg)
    q = ds.vectors([5])
    ds.search(q, 10)  # warm: imports torch for the re-scoring
    with clock("query_k10_x20"):
        for _ in range(20):
            ds.search(q, 10)
    ds.close()
    with clock("open_full_rehash"):
        Datastore.open(root, config=cfg, verify="full").close()
    disk = sum(st.bytes for st in after_add.all_files().values())
    load = os.getloadavg()[0]
    fin = clock.cpu["finalize"]
    result = {
        "n": manifest.passages, "parts": args.parts, "dim": DIM, "duplicates": manifest.duplicates,
        "index": manifest.index.kind if manifest.index else None,
        "wall_s": clock.wall, "cpu_s": clock.cpu,
        "cpu_ratio_to_finalize": {k: v / fin for k, v in clock.cpu.items()},
        "open_stamps_vs_full_wall": clock.wall["open_stamps"] / clock.wall["open_full_rehash"],
        "disk_bytes_per_passage": disk / after_add.passages,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loadavg_1m": load,
    }
    print(f"n={result['n']:,} in {args.parts} parts, {manifest.duplicates:,} duplicates, index {result['index']}; "
          f"load average {load:.1f}")
    print(f"{'step':18} {'wall s':>9} {'cpu s':>9} {'cpu / finalize':>15}")
    for k in clock.wall:
        print(f"{k:18} {clock.wall[k]:9.3f} {clock.cpu[k]:9.3f} {clock.cpu[k] / fin:15.4f}")
    print(f"open trusting stamps / open re-hashing every file (wall): {result['open_stamps_vs_full_wall']:.3f}")
    print(f"disk {result['disk_bytes_per_passage']:.0f} B/passage; peak RSS {result['peak_rss_mb']:.0f} MB")
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "finalize_bench.json").write_text(json.dumps(result, indent=1))
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
