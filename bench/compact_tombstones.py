"""`datastore compact` dropping tombstoned codes: index bytes and query time before/after, results equal.

- ``scifact N``: a real datastore (N shuffled SciFact abstracts + N/20 re-published under other ids:
  duplicates; MiniLM; IVF-PQ nlist 16 m 48), built then extended by two adds (3 segments), every 7th
  paper deleted; ``compact_index`` as `datastore compact` runs it; every other stored vector as query.
- ``synthetic``: one IVFPQIndex segment of 200k unit vectors (dim 64, nlist 256, m 16), 20% of ids
  tombstoned, 1000 queries with the exclusion; ``compact(drop=...)``.

Prints one JSON object (nothing written under bench/results). Figures: docs/dev-notes/compact-tombstones.md.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beir" / "scifact"


def scifact(n: int, work: Path) -> dict:
    from datastore.builder import DatastoreBuilder, tombstone_papers
    from datastore.config import DatastoreConfig, IVFPQConfig
    from datastore.datastore import Datastore
    from datastore.finalize import compact_index
    from datastore.manifest import read_manifest
    from retriever.st_embedder import SentenceTransformerEmbedder

    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text().splitlines() if line.strip()]
    random.Random(0).shuffle(corpus)
    docs = [{"id": d["_id"], "title": d.get("title", ""), "text": d["text"]} for d in corpus[:n]]
    dups = [{**d, "id": "copy-" + d["id"]} for d in docs[: n // 20]]

    def jl(name: str, rows: list[dict]) -> str:
        (work / name).write_text("".join(json.dumps(d) + "\n" for d in rows))
        return str(work / name)

    cfg = DatastoreConfig(part_papers=200, index="ivfpq", ivfpq=IVFPQConfig(nlist=16, m=48, nbits=8, nprobe=16, rescore=100))
    emb = SentenceTransformerEmbedder().warm_up()
    root, third = work / "ds", n // 3
    DatastoreBuilder(emb, cfg, progress=False).build([jl("a.jsonl", docs[:third] + dups)], root)
    DatastoreBuilder(emb, cfg, progress=False).add(root, [jl("b.jsonl", docs[third : 2 * third])])
    DatastoreBuilder(emb, cfg, progress=False).add(root, [jl("c.jsonl", docs[2 * third :])])
    tombstone_papers(root, [d["id"] for d in docs[::7]])
    m = read_manifest(root)

    def bench() -> tuple[np.ndarray, np.ndarray, float, int, int]:
        ds = Datastore.open(root, config=cfg, verify="full")
        q = ds.vectors(list(range(0, m.passages, 2)))
        ds.search(q[:50], 10)
        t = time.perf_counter()
        s, i = ds.search(q, 10)
        ms = (time.perf_counter() - t) / len(q) * 1e3
        return s, i, ms, sum(p.stat().st_size for p in (root / "index").iterdir()), len(q)

    s0, i0, ms0, b0, nq = bench()
    t = time.perf_counter()
    rep = compact_index(root, cfg)
    tc = time.perf_counter() - t
    s1, i1, ms1, b1, _ = bench()
    return {"passages": m.passages, "deleted": m.deleted - m.duplicates, "duplicates": m.duplicates,
            "segments": [rep.segments_before, rep.segments_after], "dropped": rep.dropped,
            "ntotal": [m.index.ntotal if m.index else 0, rep.ntotal], "index_bytes": [b0, b1],
            "ms_per_query": [round(ms0, 3), round(ms1, 3)], "queries": nq, "compact_s": round(tc, 2),
            "same_ids": bool(np.array_equal(i0, i1)), "same_scores": bool(np.array_equal(s0, s1))}


def synthetic(work: Path) -> dict:
    from datastore.config import IVFPQConfig
    from datastore.index.base import Exclusion
    from datastore.index.ivfpq import IVFPQIndex
    from datastore.part_vectors import PartVectors

    rng = np.random.default_rng(0)
    n, dim = 200_000, 64
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.choice(n, 1000, replace=False)] + 0.05 * rng.normal(size=(1000, dim)).astype(np.float32)
    index = IVFPQIndex(dim, IVFPQConfig(nlist=256, m=16, nbits=8, nprobe=16, rescore=100),
                       vectors=PartVectors([(0, x.astype(np.float16))]), memory_mb=256)
    index.train(x[:20000], n_total=n)
    index.add(x, np.arange(n, dtype=np.int64))
    index.save(work)
    drop = np.zeros(n, np.uint8)
    drop[rng.choice(n, n // 5, replace=False)] = 1
    excl = Exclusion(drop)

    def bench() -> tuple[np.ndarray, np.ndarray, float, int]:
        index.search(q[:50], 10, exclude=excl)
        t = time.perf_counter()
        s, i = index.search(q, 10, exclude=excl)
        ms = (time.perf_counter() - t) / len(q) * 1e3
        return s, i, ms, sum(p.stat().st_size for p in work.glob("*.ivfdata"))

    s0, i0, ms0, b0 = bench()
    t = time.perf_counter()
    index.compact(drop=drop)
    tc = time.perf_counter() - t
    s1, i1, ms1, b1 = bench()
    return {"n": n, "dropped": n // 5, "ntotal_after": index.ntotal, "ivfdata_bytes": [b0, b1],
            "ms_per_query": [round(ms0, 3), round(ms1, 3)], "compact_s": round(tc, 2),
            "same_ids": bool(np.array_equal(i0, i1)), "same_scores": bool(np.array_equal(s0, s1))}


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "synthetic"
    work = Path(tempfile.mkdtemp(prefix="compact-tombstones-"))
    try:
        out = scifact(int(sys.argv[2]) if len(sys.argv) > 2 else 600, work) if mode == "scifact" else synthetic(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
