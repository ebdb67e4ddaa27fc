"""`openscholar config show`: the effective settings, secrets masked."""

from __future__ import annotations

import typer

from cli.common import out, print_json, settings
from openscholar.settings import Settings, describe_fields, public_dict

app = typer.Typer(help="Inspect settings.", no_args_is_help=True)


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


@app.command("show")
def show(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings (defaults < config file < environment), secrets masked."""
    s = settings(ctx)
    data = public_dict(s)
    if as_json:
        print_json(data)
        return
    docs = dict(describe_fields(Settings))
    for key, value in _flatten(data):
        env = "OPENSCHOLAR_" + key.upper().replace(".", "__")
        out.print(f"[bold]{key}[/] = {value!r}  [dim]# {docs.get(key, '')} ({env})[/]", highlight=False)
