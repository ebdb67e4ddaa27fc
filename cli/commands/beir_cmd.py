"""`openscholar eval beir`: nDCG@10, recall@100, MRR@10 and latency of a retrieval pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli.common import err, out, print_json, settings
from retriever.recipe import PRESETS


def eval_beir(
    ctx: typer.Context,
    datastore: Path = typer.Option(None, "--datastore", help="Datastore directory (default: datastore.path)."),
    queries: Path = typer.Option(..., "--queries", exists=True, dir_okay=False, help="BEIR queries.jsonl."),
    qrels: Path = typer.Option(..., "--qrels", exists=True, dir_okay=False, help="BEIR qrels TSV (e.g. qrels/test.tsv)."),
    pipeline: str = typer.Option(None, "--pipeline", help=f"A preset: {' | '.join(PRESETS)} (default: retrieval.pipeline or retrieval.recipe)."),
    candidates: int = typer.Option(200, "--candidates", min=1, help="Passages each first stage returns."),
    limit: int = typer.Option(None, "--limit", min=1, help="Evaluate only the first N judged queries."),
    run_out: Path = typer.Option(None, "--run-out", help="Write the run (query -> ranked doc ids) as JSON."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Evaluate a pipeline on BEIR files; a document is scored by its best passage."""
    from eval.beir import load_qrels, load_queries, run_beir
    from openscholar.retrieval import build_retriever, resolve_recipe

    s = settings(ctx)
    name = resolve_recipe(s, pipeline).name
    # Documents, not passages, are judged: one passage per paper, 100 papers per query.
    s.retrieval.max_per_paper = 1
    s.retrieval.candidates = candidates
    retriever = build_retriever(s, datastore, pipeline)
    judged = load_qrels(qrels)
    if limit:
        judged = dict(list(judged.items())[:limit])
    retriever.search("warm up the models and indexes", 10)
    result = run_beir(retriever.search, load_queries(queries), judged, k=100, progress=progress)
    summary = {"pipeline": name, **result.summary()}
    if run_out:
        run_out.write_text(json.dumps(result.run), encoding="utf-8")
    if as_json:
        print_json(summary)
        return
    err.print(f"{summary['queries']} queries, pipeline {name}", highlight=False)
    for key in ("ndcg@10", "recall@100", "mrr@10", "latency_p50_ms"):
        out.print(f"{key:>15}  {summary[key]}", highlight=False)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    groups["eval"].command("beir")(eval_beir)
