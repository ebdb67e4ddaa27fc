"""The `openscholar` command: wires the product (openscholar), the service (api) and eval together.

The top floor (DESIGN.md): it may import every package; nothing imports it.
"""

from cli.main import app, main

__all__ = ["app", "main"]
