"""`openscholar datastore build|info|add|delete`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from cli.common import err, out, print_json, settings
from datastore.builder import BuildReport, DatastoreBuilder, delete_papers
from datastore.datastore import Datastore, read_manifest
from datastore.errors import ScholarError
from openscholar.components import build_embedder, default_sources

app = typer.Typer(help="Build, inspect, extend and prune datastores.", no_args_is_help=True)


def _report(report: BuildReport, seconds: float) -> None:
    for src in report.sources:
        line = f"  {src.spec}: {src.papers} papers"
        if src.malformed:
            line += f", {src.malformed} malformed records skipped (first at lines {src.malformed_lines})"
        err.print(line, highlight=False)
    err.print(
        f"{report.root}: {report.passages_added} passages added in {report.shards_written} new shards "
        f"({report.shards_reused} kept from an earlier run), {report.duplicates} duplicate passages stored once, "
        f"{seconds:.1f}s",
        highlight=False,
    )


@app.command("build")
def build(
    ctx: typer.Context,
    sources: list[str] = typer.Argument(None, help="Sources: BEIR dirs, JSONL files, ScholarQABench files (kind:PATH)."),
    out_dir: Path = typer.Option(None, "--out", help="Datastore directory (default: datastore.path)."),
    encoder: str = typer.Option(None, "--encoder", help="Embedder model id or path (default: embedder.model)."),
    index: str = typer.Option(None, "--index", help="auto | flat | ivfpq | hnsw (default: datastore.index)."),
    shard_size: int = typer.Option(None, "--shard-size", min=1, help="Passages per shard."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first malformed record."),
    default: bool = typer.Option(False, "--default", help="Build the default corpus (SciFact + ScholarQABench contexts)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Build a datastore (resumes an interrupted build of the same sources into the same --out)."""
    s = settings(ctx)
    if encoder:
        s.embedder.model = encoder
    ds_cfg = s.datastore.model_copy(deep=True)
    if index:
        if index not in ("auto", "flat", "ivfpq", "hnsw"):
            raise typer.BadParameter(f"unknown index {index!r}: use auto, flat, ivfpq or hnsw", param_hint="--index")
        ds_cfg.index = index  # type: ignore[assignment]
    if shard_size:
        ds_cfg.shard_size = shard_size
    ds_cfg.strict = strict or ds_cfg.strict
    specs = list(sources or [])
    if default:
        specs += default_sources(s)
    if not specs:
        raise typer.BadParameter("name at least one SOURCE, or pass --default", param_hint="SOURCE")
    root = out_dir or s.datastore_path
    t0 = time.perf_counter()
    report = DatastoreBuilder(build_embedder(s), ds_cfg, progress=progress).build(specs, root)
    _report(report, time.perf_counter() - t0)
    _after_change(ctx, root)


@app.command("add")
def add(
    ctx: typer.Context,
    root: Path = typer.Argument(..., help="Datastore directory."),
    sources: list[str] = typer.Argument(..., help="Sources to add."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first malformed record."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Add papers as new shards, without rebuilding (identical passages are skipped)."""
    s = settings(ctx)
    manifest = read_manifest(root.expanduser())
    s.embedder.model = manifest.encoder.id
    ds_cfg = s.datastore.model_copy(deep=True)
    ds_cfg.strict = strict or ds_cfg.strict
    ds_cfg.shard_size = manifest.shard_size
    t0 = time.perf_counter()
    report = DatastoreBuilder(build_embedder(s), ds_cfg, progress=progress).add(root, sources)
    _report(report, time.perf_counter() - t0)
    _after_change(ctx, root)


@app.command("delete")
def delete(
    ctx: typer.Context,
    root: Path = typer.Argument(..., help="Datastore directory."),
    paper_ids: list[str] = typer.Option(..., "--paper-id", help="Paper id to delete (repeatable)."),
) -> None:
    """Delete papers (e.g. retractions): their passages are never returned again."""
    counts = delete_papers(root, paper_ids)
    for pid, n in counts.items():
        err.print(f"deleted paper {pid}: {n} passages", highlight=False)
    _after_change(ctx, root)


def _after_change(ctx: typer.Context, root: Path) -> None:
    """Keep derived indexes (sparse, ...) in step with the passages."""
    from openscholar.indexing import refresh_derived_indexes

    refresh_derived_indexes(settings(ctx), root.expanduser())


def summarize(root: Path, verify: str) -> dict[str, Any]:
    """Manifest summary plus the outcome of opening with ``verify`` (fast or full)."""
    manifest = read_manifest(root)
    disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    summary: dict[str, Any] = {
        "path": str(root),
        "format_version": manifest.format_version,
        "complete": manifest.complete,
        "build_id": manifest.build_id,
        "encoder": manifest.encoder.model_dump(),
        "chunking": manifest.chunking,
        "index": sorted({s.index for s in manifest.shards}),
        "shards": len(manifest.shards),
        "passages": manifest.passages,
        "deleted_passages": manifest.deleted_passages,
        "papers_read": sum(b.papers_read for b in manifest.batches),
        "duplicates": sum(b.duplicates for b in manifest.batches),
        "batches": [b.model_dump() for b in manifest.batches],
        "disk_bytes": disk,
        "created_at": manifest.created_at,
        "updated_at": manifest.updated_at,
    }
    try:
        ds = Datastore.open(root, verify=verify)
        summary["papers"] = len({p.paper_id for p in ds.iter_passages()})
        summary["live_passages"] = len(ds)
        summary["index_memory_bytes"] = ds.memory_bytes()
        ds.close()
        summary["verification"] = {"ok": True, "mode": verify}
    except ScholarError as exc:
        summary["verification"] = {"ok": False, "mode": verify, **exc.to_dict()}
    return summary


@app.command("info")
def info(
    ctx: typer.Context,
    root: Path = typer.Argument(None, help="Datastore directory (default: datastore.path)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    fast: bool = typer.Option(False, "--fast", help="Check sizes and counts only, not checksums."),
) -> None:
    """Summarize a datastore and verify it fully (checksums, counts, ids); exit 2 if it fails."""
    root = (root or settings(ctx).datastore_path).expanduser()
    summary = summarize(root, "fast" if fast else "full")
    if as_json:
        print_json(summary)
    else:
        enc = summary["encoder"]
        out.print(f"[bold]{root}[/]  (format {summary['format_version']}, build {summary['build_id']})", highlight=False)
        out.print(f"  encoder   {enc['id']}  dim {enc['dim']}  max_tokens {enc['max_tokens']}", highlight=False)
        out.print(
            f"  passages  {summary['passages']} in {summary['shards']} shards ({', '.join(summary['index'])}); "
            f"{summary.get('papers', '?')} papers; {summary['deleted_passages']} deleted; "
            f"{summary['duplicates']} duplicates skipped",
            highlight=False,
        )
        out.print(f"  disk      {summary['disk_bytes'] / 1e6:.1f} MB; built {summary['created_at']}", highlight=False)
        v = summary["verification"]
        if v["ok"]:
            out.print(f"  verified  ok ({v['mode']})")
        else:
            out.print(f"  [red]verification failed[/]: {v['message']}\n  hint: {v['hint']}", highlight=False)
    if not summary["verification"]["ok"]:
        raise typer.Exit(2)
