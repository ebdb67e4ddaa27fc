"""`openscholar train reranker`: the default cross-encoder reranker, trained here on honest data."""

from __future__ import annotations

import random
import time
from pathlib import Path

import typer

from cli.common import err, print_json, settings


def train_reranker(
    ctx: typer.Context,
    out_dir: Path = typer.Option(None, "--out", help="Output directory (default: <cache_dir>/reranker)."),
    datastore: Path = typer.Option(None, "--datastore", help="Datastore for hard negatives (default: datastore.path)."),
    beir_dir: Path = typer.Option(None, "--beir-dir", help="BEIR SciFact directory (default: corpus.scifact_dir)."),
    split: str = typer.Option("train", "--split", help="Qrels split to train on (never test)."),
    extra: list[Path] = typer.Option(
        None, "--extra", help="Extra question->gold-context files, e.g. ScholarQABench's PubMedQA dev "
        "(single_paper_tasks/pubmed_dev.jsonl); SciFact test files are refused."
    ),
    no_extra: bool = typer.Option(False, "--no-extra", help="Ignore --extra (train on the BEIR split only)."),
    seed: int = typer.Option(13, "--seed", help="Random seed (data sampling, init, order)."),
    epochs: int = typer.Option(1, "--epochs", min=1, help="Passes over the training groups."),
    max_train_queries: int = typer.Option(None, "--max-train-queries", min=1, help="Cap on BEIR training queries."),
    dev_queries: int = typer.Option(100, "--dev-queries", min=0, help="Train claims held out (first N sorted ids)."),
    max_tokens: int = typer.Option(128, "--max-tokens", min=32, help="Token budget of a training pair."),
    negatives: int = typer.Option(3, "--negatives", min=1, help="Hard negatives per query."),
    negative_pool: int = typer.Option(12, "--negative-pool", min=1, help="Negatives are sampled from this many top non-gold papers."),
    trainable_layers: int = typer.Option(2, "--trainable-layers", min=1, help="Top encoder layers that carry LoRA adapters."),
    lora_r: int = typer.Option(16, "--lora-r", min=1, help="LoRA rank."),
    lr: float = typer.Option(5e-4, "--lr", min=0.0, help="Learning rate of the LoRA weights."),
    queries_per_step: int = typer.Option(8, "--queries-per-step", min=1, help="Training queries per optimizer step."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads (0: torch's default)."),
    max_seconds: float = typer.Option(None, "--max-seconds", min=1.0, help="Wall-clock cap of the training loop."),
    corpus_queries: int = typer.Option(
        0, "--corpus-queries", min=0, help="Pseudo-queries from the BEIR corpus (an abstract's last sentence -> "
        "title + the rest of it); no qrels are read."
    ),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 autocast only on CPUs with native bf16), fp32 or bf16."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Train the default reranker (LoRA + head over the base MiniLM) and write it with a data manifest."""
    from openscholar.components import build_embedder, open_datastore, scifact_dir
    from retriever.dense import DenseRetriever
    from retriever.sparse import open_sparse
    from retriever.train_reranker import (
        RerankerTrainConfig,
        corpus_pseudo_groups,
        qa_context_groups,
        save_reranker,
        scifact_groups,
        train_cross_encoder,
    )

    if precision not in ("auto", "fp32", "bf16"):
        raise typer.BadParameter("use auto, fp32 or bf16", param_hint="--precision")
    if split == "test":
        raise typer.BadParameter("the reranker is never trained on test qrels", param_hint="--split")
    s = settings(ctx)
    cfg = RerankerTrainConfig(
        seed=seed, epochs=epochs, max_train_queries=max_train_queries, dev_queries=dev_queries,
        max_tokens=max_tokens, negatives=negatives, threads=threads, negative_pool=negative_pool,
        trainable_layers=trainable_layers, lora_r=lora_r, lr=lr, queries_per_step=queries_per_step,
        max_seconds=max_seconds, corpus_queries=corpus_queries,
        bf16={"auto": None, "fp32": False, "bf16": True}[precision],
    )
    out = (out_dir or s.cache_path / "reranker").expanduser()
    beir = (beir_dir or scifact_dir(s)).expanduser()
    extras = [] if no_extra else list(extra or [])
    t0 = time.perf_counter()
    ds = open_datastore(s, datastore)
    dense = DenseRetriever(ds, build_embedder(s))
    sparse = open_sparse(ds, s.retrieval.sparse, backend="bm25s")
    searchers = [sparse.search_batch, dense.search_batch]
    rng = random.Random(seed)
    groups, dev, record = scifact_groups(beir, ds, searchers, cfg, rng, split=split)
    inputs = [record]
    for path in extras:
        more, rec = qa_context_groups(path.expanduser(), searchers, cfg, rng)
        groups += more
        inputs.append(rec)
    if corpus_queries:
        more, rec = corpus_pseudo_groups(beir, searchers, cfg, rng, corpus_queries)
        groups += more
        inputs.append(rec)
    mining = time.perf_counter() - t0
    err.print(f"{len(groups)} training queries ({sum(1 + len(g.negatives) for g in groups)} pairs), mined in {mining:.0f}s")
    trained = train_cross_encoder(groups, cfg, progress=progress)
    total = round(time.perf_counter() - t0, 1)
    manifest = save_reranker(out, trained, cfg, groups, dev, inputs, mining_seconds=round(mining, 1), total_seconds=total,
                             datastore_build_id=ds.manifest.build_id)
    if as_json:
        print_json(manifest.model_dump(mode="json"))
    else:
        err.print(f"reranker written to {out} in {total:.0f}s (manifest {out / 'manifest.json'})")
        err.print(f"use it: retrieval.reranker.model = 'default' (or '{out}')")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    groups["train"].command("reranker")(train_reranker)
