"""passages.sqlite with plain vs zlib-compressed text: bytes per passage, write and random-read speed.

SciFact's corpus chunked the datastore's way (256 words, title kept aside), written into one part's
SQLite file both ways; reads are 2,000 random `get` calls of 10 ids (a query's hits), interleaved
between the variants. Prints a table and writes bench/results/passage_store_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from datastore.chunking import Chunker
from datastore.config import ChunkingConfig
from datastore.passage_store import PassageStore
from datastore.sources import open_source

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "beir" / "scifact"))
    ap.add_argument("--reads", type=int, default=2000)
    args = ap.parse_args()
    chunker = Chunker(ChunkingConfig(), lambda texts: [len(t.split()) for t in texts], 100_000)
    passages = [p for paper in open_source(f"beir:{args.corpus}") for p in chunker.passages(paper)]
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        for name, compress in (("plain", False), ("zlib", True)):
            path = Path(tmp) / f"{name}.sqlite"
            t0 = time.perf_counter()
            store = PassageStore(path, readonly=False, compress=compress)
            for i in range(0, len(passages), 1000):
                store.write(i, passages[i : i + 1000])
            store.finish()
            out[name] = {"write_s": time.perf_counter() - t0, "bytes_per_passage": path.stat().st_size / len(passages)}
            stores[name] = PassageStore(path, readonly=True)
        rng = random.Random(0)
        timings: dict[str, list[float]] = {n: [] for n in stores}
        for _ in range(args.reads):
            ids = rng.sample(range(len(passages)), 10)
            for name, store in stores.items():
                t0 = time.perf_counter()
                store.get(ids)
                timings[name].append(time.perf_counter() - t0)
    for name, ts in timings.items():
        ts.sort()
        out[name]["get10_p50_ms"] = ts[len(ts) // 2] * 1e3
    load = os.getloadavg()[0]
    result = {
        "passages": len(passages),
        "mean_words": sum(len(p.text.split()) for p in passages) / len(passages),
        "variants": out,
        "disk_ratio_zlib_vs_plain": out["zlib"]["bytes_per_passage"] / out["plain"]["bytes_per_passage"],
        "read_ratio_zlib_vs_plain": out["zlib"]["get10_p50_ms"] / out["plain"]["get10_p50_ms"],
        "loadavg_1m": load,
    }
    print(f"{len(passages)} passages, {result['mean_words']:.0f} words on average; load average {load:.1f}")
    print(f"{'variant':8} {'B/passage':>10} {'write s':>8} {'get(10) p50 ms':>15}")
    for name, v in out.items():
        print(f"{name:8} {v['bytes_per_passage']:10.0f} {v['write_s']:8.2f} {v['get10_p50_ms']:15.3f}")
    print(f"zlib/plain: disk {result['disk_ratio_zlib_vs_plain']:.2f}x, read time {result['read_ratio_zlib_vs_plain']:.2f}x")
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "passage_store_bench.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
