"""Embedder throughput: our SentenceTransformerEmbedder vs plain ``SentenceTransformer.encode`` fp32.

Same passages for every variant: the first N (default 1,000) documents of BEIR SciFact's
corpus.jsonl as ``title + " " + text`` (not chunked; the model truncates at 256 tokens as plain
sentence-transformers does). Variants run interleaved chunk by chunk (each chunk of passages goes
through every variant, in rotating order), so machine load hits them alike; the speedup is the
median over chunks of baseline time / variant time. Cosines are between each variant's vectors
and the fp32 baseline's, per passage.

    nice -n 10 .venv/bin/python bench/embedder_bench.py            # 1,000 passages
    nice -n 10 .venv/bin/python bench/embedder_bench.py --n 256    # quick look

Writes bench/results/embedder_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from retriever.config import EmbedderConfig
from retriever.st_embedder import SentenceTransformerEmbedder, resolve_model_path

SCIFACT = REPO.parent / "shared" / "data" / "beir" / "scifact" / "corpus.jsonl"


def load_passages(n: int) -> list[str]:
    out = []
    with SCIFACT.open(encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            out.append(f"{d.get('title', '')} {d.get('text', '')}".strip())
            if len(out) == n:
                break
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="SciFact passages")
    ap.add_argument("--chunk", type=int, default=128, help="passages per interleaved chunk")
    ap.add_argument("--batch-size", type=int, default=64, help="batch size of every variant")
    ap.add_argument("--variants", nargs="+", default=["ours", "ours-eager"],
                    help="ours (auto precision + compiled bulk path), ours-eager (auto precision, no compile)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "embedder_bench.json")
    args = ap.parse_args(argv)

    import torch
    from sentence_transformers import SentenceTransformer

    texts = load_passages(args.n)
    plain = SentenceTransformer(resolve_model_path(EmbedderConfig().model), device="cpu")
    plain.eval()

    def baseline(batch: list[str]) -> np.ndarray:
        return np.asarray(plain.encode(batch, batch_size=args.batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)

    runners: dict[str, Any] = {"plain-fp32": baseline}
    setup: dict[str, Any] = {}
    for name in args.variants:
        cfg = EmbedderConfig(batch_size=args.batch_size, compile_after=0 if name == "ours" else None)
        emb = SentenceTransformerEmbedder(cfg).warm_up()
        t = time.perf_counter()
        emb.embed(texts[:2])  # precision probe and, for "ours", the compile + its cosine check
        setup[name] = {"setup_s": round(time.perf_counter() - t, 1), "uses_bf16": emb.uses_bf16,
                       "uses_compile": emb.uses_compile, "compile_report": emb.compile_report}
        print(f"{name}: setup {setup[name]}", flush=True)
        runners[name] = emb.embed
    baseline(texts[:2])

    tok = plain.tokenizer(texts, truncation=True, max_length=plain.max_seq_length)["input_ids"]
    names = list(runners)
    times: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}  # process CPU time: what the work cost, load aside
    vecs: dict[str, list[np.ndarray]] = {k: [] for k in names}
    chunks = [texts[s : s + args.chunk] for s in range(0, len(texts), args.chunk)]
    t0 = time.perf_counter()
    for c, chunk in enumerate(chunks):
        order = names[c % len(names):] + names[: c % len(names)]  # rotate who goes first
        for k in order:
            c0, t = time.process_time(), time.perf_counter()
            v = runners[k](chunk)
            times[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c0)
            vecs[k].append(v)
        print(f"chunk {c + 1}/{len(chunks)}: " + "  ".join(
            f"{k} {len(chunk) / times[k][-1]:.1f}/s" for k in names) + f"  load {os.getloadavg()[0]:.1f}", flush=True)
    ref = np.vstack(vecs["plain-fp32"])
    rows = []
    for k in names:
        v = np.vstack(vecs[k])
        cos = np.sum(ref * v, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(v, axis=1))
        per_chunk = np.array(times["plain-fp32"]) / np.array(times[k])
        rows.append({
            "variant": k,
            "passages_per_s": round(len(texts) / sum(times[k]), 2),
            "median_chunk_passages_per_s": round(float(np.median([len(c) / t for c, t in zip(chunks, times[k], strict=True)])), 2),
            "speedup_median_over_chunks": round(float(np.median(per_chunk)), 3),
            "speedup_total": round(sum(times["plain-fp32"]) / sum(times[k]), 3),
            "cpu_s_per_passage": round(sum(cpu[k]) / len(texts), 4),
            "speedup_cpu_time": round(sum(cpu["plain-fp32"]) / sum(cpu[k]), 3),
            "min_cosine_to_fp32": round(float(cos.min()), 6),
            "mean_cosine_to_fp32": round(float(cos.mean()), 6),
            **setup.get(k, {}),
        })
    result = {
        "passages": f"first {len(texts)} SciFact corpus documents, title + ' ' + text, not chunked",
        "mean_tokens": round(float(np.mean([len(t) for t in tok])), 1),
        "batch_size": args.batch_size,
        "chunk": args.chunk,
        "wall_s": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_at_end": os.getloadavg()},
        "rows": rows,
    }
    print(f"\n{len(texts)} SciFact passages, mean {result['mean_tokens']} tokens, batch {args.batch_size}, "
          f"{result['threads']} torch threads, interleaved in chunks of {args.chunk}")
    print(f"  {'variant':12s} {'passages/s':>10s} {'speedup(median)':>15s} {'speedup(total)':>14s} "
          f"{'speedup(cpu)':>12s} {'min cos':>8s} {'mean cos':>9s}")
    for r in rows:
        print(f"  {r['variant']:12s} {r['passages_per_s']:10.2f} {r['speedup_median_over_chunks']:15.2f} "
              f"{r['speedup_total']:14.2f} {r['speedup_cpu_time']:12.2f} {r['min_cosine_to_fp32']:8.5f} {r['mean_cosine_to_fp32']:9.6f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
