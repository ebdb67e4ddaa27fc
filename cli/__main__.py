"""``python -m cli``: the `openscholar` command (what the console script runs)."""

from cli.main import main

main()
