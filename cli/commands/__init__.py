"""Command groups of the `openscholar` command; `cli.main` assembles them."""
