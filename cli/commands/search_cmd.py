"""`openscholar search "QUERY"`: ranked passages from the datastore."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import out, print_json, settings
from openscholar.components import build_embedder, dense_retriever, open_datastore


def search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="The query."),
    datastore: Path = typer.Option(None, "--datastore", help="Datastore directory (default: datastore.path)."),
    k: int = typer.Option(10, "-k", "--k", min=1, max=1000, help="Number of hits."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON hits."),
) -> None:
    """Search the datastore and print the top-k passages."""
    if not query.strip():
        raise typer.BadParameter("the query is empty", param_hint="QUERY")
    s = settings(ctx)
    embedder = build_embedder(s)
    ds = open_datastore(s, datastore)
    hits = dense_retriever(s, ds, embedder).search(query, k)
    if as_json:
        print_json([h.to_dict() for h in hits])
        return
    if not hits:
        out.print("no passages found")
    for rank, hit in enumerate(hits, start=1):
        p = hit.passage
        snippet = p.text[:220] + ("…" if len(p.text) > 220 else "")
        out.print(f"[bold]{rank:>2}. {p.title or '(untitled)'}[/] ({p.year or 'n.d.'})  score {hit.score:.3f}  [dim]paper {p.paper_id}[/]", highlight=False)
        out.print(f"    {snippet}", highlight=False)
