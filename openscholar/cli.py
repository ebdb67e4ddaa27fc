"""The `openscholar` command line: one entry point for building, searching, answering, serving, eval."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from datastore.errors import ScholarError
from openscholar.commands import config_cmd, datastore_cmd, search_cmd
from openscholar.commands.common import CliState, err

app = typer.Typer(
    help="OpenScholar: scientific question answering over the literature with checked citations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(datastore_cmd.app, name="datastore")
app.command("search")(search_cmd.search)


@app.callback()
def root(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", help="Config file (TOML, YAML or JSON).", envvar=None),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = CliState(config=config)


def main() -> None:
    """Console script: domain errors become a message, a hint and exit status 2 (no traceback)."""
    try:
        app()
    except ScholarError as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False)
        if exc.hint:
            err.print(f"[yellow]hint:[/] {exc.hint}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
