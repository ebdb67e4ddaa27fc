"""`openscholar datastore build|add|delete|info|verify|compact`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from cli.build_workers import make_builder, parts_for, report_workers
from cli.common import err, out, print_json, settings
from datastore.builder import BuildReport, tombstone_papers
from datastore.errors import ScholarError
from datastore.integrity import check_files, scrub
from datastore.manifest import FORMAT_VERSION, read_manifest
from openscholar.components import default_sources

app = typer.Typer(help="Build, inspect, extend, prune, verify and compact datastores.", no_args_is_help=True)


def _report(report: BuildReport, seconds: float) -> None:
    for src in report.sources:
        line = f"  {src.spec}: {src.papers} papers"
        if src.malformed:
            line += f", {src.malformed} malformed records skipped (first at lines {src.malformed_lines})"
        err.print(line, highlight=False)
    m = report.manifest
    err.print(
        f"{report.root}: {report.passages_added} passages in {report.parts_written} new parts "
        f"({report.parts_reused} kept from an earlier run); datastore: {m.passages if m else '?'} passages, "
        f"{report.duplicates} duplicates stored once, index {m.index.kind if m and m.index else '?'}; {seconds:.1f}s",
        highlight=False,
    )


@app.command("build")
def build(
    ctx: typer.Context,
    sources: list[str] = typer.Argument(None, help="Sources: BEIR dirs, JSONL files, ScholarQABench files (kind:PATH)."),
    out_dir: Path = typer.Option(None, "--out", help="Datastore directory (default: datastore.path)."),
    encoder: str = typer.Option(None, "--encoder", help="Embedder model id or path (default: embedder.model)."),
    index: str = typer.Option(None, "--index", help="auto | flat | ivfpq | hnsw (default: datastore.index)."),
    part_papers: int = typer.Option(None, "--part-papers", min=1, help="Papers per part (unit of work and resumption)."),
    parts: int = typer.Option(None, "--parts", min=1, help="Cut the sources into about this many parts (instead of --part-papers)."),
    workers: str = typer.Option(
        "local", "--workers",
        help="local: embed in this process; celery: Celery workers (`openscholar worker --queues build`, broker "
        "service.broker_url) build the parts on storage they share with this process, which then finalizes.",
    ),
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
    if part_papers:
        ds_cfg.part_papers = part_papers
    ds_cfg.strict = strict or ds_cfg.strict
    specs = list(sources or [])
    if default:
        specs += default_sources(s)
    if not specs:
        raise typer.BadParameter("name at least one SOURCE, or pass --default", param_hint="SOURCE")
    if parts:
        ds_cfg.part_papers = parts_for(specs, ds_cfg, parts)
    root = (out_dir or s.datastore_path).expanduser()
    if default and out_dir is None:
        _move_old_format_aside(root)
    t0 = time.perf_counter()
    builder = make_builder(s, ds_cfg, workers, progress=progress)
    report = builder.build(specs, root)
    _report(report, time.perf_counter() - t0)
    report_workers(builder, report)
    _after_change(ctx, root, added=report.added)


def _move_old_format_aside(root: Path) -> None:
    """The default datastore is a cache: one of an older format is renamed (kept), not refused, so that
    `make demo` rebuilds it. Any other directory is left to the build's own checks."""
    import json

    try:
        version = json.loads((root / "manifest.json").read_text()).get("format_version")
    except (OSError, ValueError, AttributeError):
        return
    if version is not None and version != FORMAT_VERSION:
        aside = root.with_name(f"{root.name}.format{version}")
        if not aside.exists():
            root.rename(aside)
            err.print(f"{root} held a format {version} datastore: moved to {aside}; building format {FORMAT_VERSION}",
                      highlight=False)


@app.command("add")
def add(
    ctx: typer.Context,
    root: Path = typer.Argument(..., help="Datastore directory."),
    sources: list[str] = typer.Argument(..., help="Sources to add."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first malformed record."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    workers: str = typer.Option("local", "--workers", help="local, or celery (as for `datastore build`)."),
) -> None:
    """Add papers as new parts without rebuilding: new passages are deduplicated against the hash index
    and added to the index without retraining."""
    s = settings(ctx)
    root = root.expanduser()
    manifest = read_manifest(root, require_complete=True)
    s.embedder.model = manifest.encoder.id
    ds_cfg = s.datastore.model_copy(deep=True)
    ds_cfg.strict = strict or ds_cfg.strict
    t0 = time.perf_counter()
    builder = make_builder(s, ds_cfg, workers, progress=progress)
    report = builder.add(root, sources)
    _report(report, time.perf_counter() - t0)
    report_workers(builder, report)
    _after_change(ctx, root, added=report.added)


@app.command("delete")
def delete(
    ctx: typer.Context,
    root: Path = typer.Argument(..., help="Datastore directory."),
    paper_ids: list[str] = typer.Option(..., "--paper-id", help="Paper id to delete (repeatable)."),
) -> None:
    """Delete papers (e.g. retractions): their passages are tombstoned and never returned again."""
    root = root.expanduser()
    counts, ids = tombstone_papers(root, paper_ids)
    for pid, n in counts.items():
        err.print(f"deleted paper {pid}: {n} passages", highlight=False)
    _after_change(ctx, root, deleted=ids)


def _after_change(
    ctx: typer.Context, root: Path, *, added: tuple[int, int] | None = None, deleted: list[int] | None = None
) -> None:
    """Keep derived indexes (sparse, ...) in step with the passages: only what changed, where supported."""
    from openscholar.indexing import refresh_derived_indexes

    try:
        from retriever.sparse.protocol import Change  # type: ignore[attr-defined]
    except ImportError:  # the sparse layer before incremental updates (ds-sparse)
        refresh_derived_indexes(settings(ctx), root)
        return
    refresh_derived_indexes(settings(ctx), root, Change(added=added, deleted=list(deleted or [])))  # type: ignore[call-arg]


def summarize(root: Path, verify: str = "fast") -> dict[str, Any]:
    """What the manifest says (counts, bytes, index, parts), plus a stamp check of every file.

    Reads no passage: ``fast`` stats every file and re-hashes those whose size or mtime changed;
    ``stat`` only compares sizes and mtimes.
    """
    manifest = read_manifest(root)
    files = manifest.all_files()
    summary: dict[str, Any] = {
        "path": str(root),
        "format_version": manifest.format_version,
        "complete": manifest.complete,
        "build_id": manifest.build_id,
        "encoder": manifest.encoder.model_dump(),
        "chunking": manifest.chunking,
        "index": manifest.index.model_dump() if manifest.index else None,
        "parts": len(manifest.parts),
        "passages": manifest.passages,
        "live_passages": manifest.live,
        "deleted_passages": manifest.deleted_passages,
        "duplicates": manifest.duplicates,
        "papers": manifest.papers_read,
        "sources": [s.model_dump() for s in manifest.source_stats],
        "disk_bytes": sum(st.bytes for st in files.values()),
        "files": len(files),
        "created_at": manifest.created_at,
        "updated_at": manifest.updated_at,
    }
    try:
        if not manifest.complete:
            read_manifest(root, require_complete=True)
        rehashed = check_files(root, manifest, "stat" if verify == "stat" else "fast")
        summary["verification"] = {"ok": True, "mode": verify, "rehashed": rehashed}
    except ScholarError as exc:
        summary["verification"] = {"ok": False, "mode": verify, **exc.to_dict()}
    return summary


@app.command("info")
def info(
    ctx: typer.Context,
    root: Path = typer.Argument(None, help="Datastore directory (default: datastore.path)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    fast: bool = typer.Option(False, "--fast", help="Compare sizes and mtimes only; never re-hash a file."),
) -> None:
    """Summarize a datastore from its manifest and check its files' stamps; exit 2 if a check fails.

    Files whose size or mtime changed are re-hashed (unless --fast); `datastore verify` re-hashes all.
    """
    root = (root or settings(ctx).datastore_path).expanduser()
    summary = summarize(root, "stat" if fast else "fast")
    if as_json:
        print_json(summary)
    else:
        enc = summary["encoder"]
        idx = summary["index"] or {}
        out.print(f"[bold]{root}[/]  (format {summary['format_version']}, build {summary['build_id']})", highlight=False)
        out.print(f"  encoder   {enc['id']}  dim {enc['dim']}  max_tokens {enc['max_tokens']}", highlight=False)
        out.print(
            f"  passages  {summary['live_passages']} live of {summary['passages']} in {summary['parts']} parts; "
            f"{summary['papers']} papers read; {summary['deleted_passages']} deleted; "
            f"{summary['duplicates']} duplicates",
            highlight=False,
        )
        out.print(f"  index     {idx.get('kind', '?')} ({idx.get('ntotal', 0)} vectors)", highlight=False)
        out.print(f"  disk      {summary['disk_bytes'] / 1e6:.1f} MB in {summary['files']} files; built {summary['created_at']}", highlight=False)
        v = summary["verification"]
        if v["ok"]:
            out.print(f"  checked   ok (stamps; {len(v['rehashed'])} changed files re-hashed)" if v["mode"] != "stat" else "  checked   ok (sizes and mtimes)")
        else:
            out.print(f"  [red]check failed[/]: {v['message']}\n  hint: {v['hint']}", highlight=False)
    if not summary["verification"]["ok"]:
        raise typer.Exit(2)


@app.command("verify")
def verify(
    ctx: typer.Context,
    root: Path = typer.Argument(None, help="Datastore directory (default: datastore.path)."),
    restart: bool = typer.Option(False, "--restart", help="Re-hash every file, ignoring an interrupted scrub's progress."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Re-hash every file against the manifest (bit rot); resumes an interrupted scrub; exit 1 on a mismatch."""
    root = (root or settings(ctx).datastore_path).expanduser()
    manifest = read_manifest(root)
    t0 = time.perf_counter()
    report = scrub(root, manifest, progress=progress, restart=restart)
    seconds = time.perf_counter() - t0
    err.print(
        f"{root}: {len(report.checked)} files verified ({report.bytes_hashed / 1e6:.1f} MB in {seconds:.1f}s), "
        f"{len(report.skipped)} already verified by an interrupted scrub, {len(report.bad)} bad",
        highlight=False,
    )
    for rel, why in report.bad:
        out.print(f"[red]BAD[/] {rel}: {why}", highlight=False)
    if report.bad:
        raise typer.Exit(1)


@app.command("compact")
def compact(
    ctx: typer.Context,
    root: Path = typer.Argument(None, help="Datastore directory (default: datastore.path)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was done as JSON."),
) -> None:
    """Merge the IVF-PQ index's segments into one and drop the codes of deleted and duplicate passages; results do not change.

    Each `datastore add` leaves one more segment, and the codes of passages removed by `datastore
    delete` (or found duplicate) stay in the index, excluded at query time, until a compact drops
    them (their ids stay deleted). Rewrites the index once (needs its size in free disk), under the
    write lock; readers keep serving meanwhile. Runs for one segment too when it holds such codes.
    flat and HNSW indexes are one file: nothing to compact.
    """
    from datastore.finalize import compact_index

    root = (root or settings(ctx).datastore_path).expanduser()
    t0 = time.perf_counter()
    report = compact_index(root, settings(ctx).datastore)
    seconds = time.perf_counter() - t0
    if as_json:
        print_json({"path": str(root), "kind": report.kind, "changed": report.changed,
                    "segments_before": report.segments_before, "segments_after": report.segments_after,
                    "index_bytes_before": report.bytes_before, "index_bytes_after": report.bytes_after,
                    "vectors": report.ntotal, "dropped": report.dropped, "seconds": round(seconds, 2)})

    def segments(n: int) -> str:
        return f"{n} segment" + ("" if n == 1 else "s")

    if report.kind != "ivfpq":
        msg = f"{root}: the index is {report.kind}, one file with no segments: nothing to compact (only IVF-PQ indexes have segments)"
    elif not report.changed:
        msg = (f"{root}: the IVF-PQ index has {segments(report.segments_before)} and no codes of deleted or duplicate "
               "passages: nothing to compact")
    else:
        msg = (f"{root}: IVF-PQ index compacted: {segments(report.segments_before)} -> {report.segments_after}, "
               f"{report.dropped} codes of deleted or duplicate passages dropped ({report.ntotal} vectors kept; "
               f"index {report.bytes_before / 1e6:.1f} -> {report.bytes_after / 1e6:.1f} MB; files re-stamped); {seconds:.1f}s")
    err.print(msg, highlight=False)
