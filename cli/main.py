"""The `openscholar` command line: one entry point for building, searching, answering, serving, eval."""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from pathlib import Path

import typer

from cli.commands import config_cmd, datastore_cmd, search_cmd
from cli.common import CliState, err
from datastore.errors import ScholarError

app = typer.Typer(
    help="OpenScholar: scientific question answering over the literature with checked citations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(datastore_cmd.app, name="datastore")
app.command("search")(search_cmd.search)

# Command groups that several modules add commands to.
GROUPS: dict[str, typer.Typer] = {
    "train": typer.Typer(help="Train the models that no package ships (reranker, support judge).", no_args_is_help=True),
    "eval": typer.Typer(help="Evaluate retrieval (BEIR) and answers (ScholarQABench).", no_args_is_help=True),
}
for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)

# Each module exposes ``register(app, groups)`` and adds its own commands; one file per feature,
# so features are added without editing this file.
COMMAND_MODULES = (
    "cli.commands.beir_cmd",
    "cli.commands.train_reranker_cmd",
    "cli.commands.ask_cmd",
    "cli.commands.train_judge_cmd",
    "cli.commands.train_quotes_cmd",
    "cli.commands.router_cmd",
    "cli.commands.serve_cmd",
    "cli.commands.sqa_cmd",
    "cli.commands.import_cmd",
)
for _module in COMMAND_MODULES:
    try:
        importlib.import_module(_module).register(app, GROUPS)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise


@app.callback()
def root(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", help="Config file (TOML, YAML or JSON).", envvar=None),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        # The handler filters too: a library that sets its own logger to DEBUG (bm25s does) would
        # otherwise print its debug lines through the root handler.
        handler.setLevel(level)
    if not sys.stderr.isatty():
        # Progress bars only on a terminal: Hugging Face libraries draw theirs ("Loading weights") into
        # logs otherwise. Done before they are imported (transformers reads this once, at import).
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    ctx.obj = CliState(config=config)


def main() -> None:
    """Console script: domain errors become a message, a hint and exit status 2 (no traceback)."""
    # transformers 5 deprecates an attribute that peft still reads on every adapter load (reranker,
    # experts, judges): a library-internal FutureWarning a user can do nothing about.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
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
