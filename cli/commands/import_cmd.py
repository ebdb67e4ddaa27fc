"""`openscholar datastore import-openscholar`: the reference's released datastore, imported as parts."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cli.common import err, print_json, settings
from datastore.importer import ImportReport, import_release


def _parse_shards(value: str | None) -> list[int] | None:
    if not value:
        return None
    try:
        return sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of shard numbers", param_hint="--shards") from exc


def _print(report: ImportReport, seconds: float) -> None:
    for s in report.shards:
        line = (
            f"  shard {s.shard} -> {s.part} ({s.status}): {s.imported} passages imported of "
            f"{s.passages_in_release} passages / {s.vectors_in_release} vectors"
        )
        if s.mismatched:
            line += (
                f" [MISMATCH, joined on id: {s.passages_without_vector} passages without a vector and "
                f"{s.vectors_without_passage} vectors without a passage dropped"
                + (f", {s.duplicate_passage_ids} repeated passage ids" if s.duplicate_passage_ids else "")
                + "]"
            )
        if s.malformed_lines:
            line += f", {s.malformed_lines} malformed lines skipped (first {s.first_malformed_lines})"
        if report.join is not None:
            line += f"; papers joined {s.papers_matched}, unmatched {s.papers_unmatched}"
        err.print(line, highlight=False)
    if report.join is not None:
        j = report.join
        err.print(f"  paper join: {j.papers} papers, {j.chunks} chunks from {len(j.sources)} files "
                  f"({j.malformed} malformed records skipped)", highlight=False)
    if report.missing_shards:
        err.print(f"  release shards not imported yet: {report.missing_shards}", highlight=False)
    tail = ""
    if report.manifest is not None:
        tail = f"; finalized: {report.manifest.passages} passages, index {report.manifest.index.kind if report.manifest.index else '?'}"
    err.print(f"{report.root}: {report.imported} passages imported in {seconds:.1f}s{tail}", highlight=False)


def import_openscholar(
    ctx: typer.Context,
    src: Path = typer.Argument(..., help="Directory of the release (OpenScholar-DataStore-V3: passages/ and embeddings/)."),
    out_dir: Path = typer.Option(..., "--out", help="Datastore directory to write (resumes an earlier import into it)."),
    papers: list[Path] = typer.Option(None, "--papers", help="peS2o JSONL file(s) giving passages their paper id, title, year, url."),
    trust_pickles: bool = typer.Option(
        False, "--trust-pickles",
        help="Read the release's .pkl embedding files. Loading a pickle can run code; the importer never unpickles "
        "(it reads the opcodes and memory-maps the array), but still reads pickles only when you say you trust them.",
    ),
    vectors_format: str = typer.Option("pickle", "--vectors-format", help="pickle (passages_SS.pkl) or npy (passages_SS.npy + passages_SS_ids.npy)."),
    shards: str = typer.Option(None, "--shards", help="Comma-separated release shards to import (default: all)."),
    finish: bool = typer.Option(False, "--finish", help="After importing, build the global index and write the manifest."),
    index: str = typer.Option(None, "--index", help="With --finish: auto | flat | ivfpq | hnsw (default: datastore.index)."),
    batch_size: int = typer.Option(8192, "--batch-size", min=1, help="Passages per write batch (bounds memory)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Import the reference's released passages and fp16 vectors (one part per release shard)."""
    if vectors_format not in ("pickle", "npy"):
        raise typer.BadParameter(f"unknown format {vectors_format!r}: use pickle or npy", param_hint="--vectors-format")
    s = settings(ctx)
    config = s.datastore.model_copy(deep=True)
    if index:
        if index not in ("auto", "flat", "ivfpq", "hnsw"):
            raise typer.BadParameter(f"unknown index {index!r}: use auto, flat, ivfpq or hnsw", param_hint="--index")
        config.index = index  # type: ignore[assignment]
    t0 = time.perf_counter()
    report = import_release(
        src, out_dir, fmt=vectors_format,  # type: ignore[arg-type]
        trust_pickles=trust_pickles, shards=_parse_shards(shards), papers=list(papers or []), finish=finish,
        config=config, batch_size=batch_size, progress=progress,
    )
    seconds = time.perf_counter() - t0
    _print(report, seconds)
    if finish:
        from cli.commands.datastore_cmd import _after_change

        _after_change(ctx, out_dir)
    if as_json:
        print_json({
            "root": str(report.root), "seconds": round(seconds, 2), "imported": report.imported,
            "shards": [vars(x) for x in report.shards], "join": vars(report.join) if report.join else None,
            "missing_shards": report.missing_shards,
            "manifest_passages": report.manifest.passages if report.manifest else None,
        })


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    from cli.commands import datastore_cmd

    datastore_cmd.app.command("import-openscholar")(import_openscholar)
