"""router imports retriever, never the reverse (DESIGN.md layering)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imported_packages(package: str) -> set[str]:
    found: set[str] = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_router_sits_between_retriever_and_openscholar() -> None:
    assert "retriever" in imported_packages("router")
    assert not {"openscholar", "api", "eval"} & imported_packages("router")
    assert "router" not in imported_packages("retriever")
    assert "router" not in imported_packages("datastore")
