"""CLI command groups; `openscholar.cli` assembles them."""
