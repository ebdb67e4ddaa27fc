"""Every import rule of ../shared/docs/DESIGN.md ("Layers and what may import what"), for every package.

    datastore <- retriever <- router <- openscholar <- api <- cli;  eval may import anything below api.
    Nothing imports api or eval except cli; nothing imports cli; retriever never imports router.
    Only settings read the environment.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("datastore", "retriever", "router", "openscholar", "api", "eval", "cli")
# What each package may import (besides itself), straight from the design's rules.
ALLOWED: dict[str, set[str]] = {
    "datastore": set(),
    "retriever": {"datastore"},
    "router": {"datastore", "retriever"},
    "openscholar": {"datastore", "retriever", "router"},
    "api": {"datastore", "retriever", "router", "openscholar"},
    "eval": {"datastore", "retriever", "router", "openscholar"},
    "cli": {"datastore", "retriever", "router", "openscholar", "api", "eval"},
}
SETTINGS_MODULE = REPO / "openscholar" / "settings.py"


def imports_of(package: str) -> dict[str, set[str]]:
    """First-party packages each module of ``package`` imports (at any depth, lazily or not)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names & set(PACKAGES)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down_only(package: str) -> None:
    bad = {
        module: sorted(names - ALLOWED[package] - {package})
        for module, names in imports_of(package).items()
        if names - ALLOWED[package] - {package}
    }
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}; found {bad}"


def test_the_rules_are_the_designs() -> None:
    """The table above encodes the design's sentences; check them one by one."""
    order = ["datastore", "retriever", "router", "openscholar", "api", "cli"]
    for i, pkg in enumerate(order):
        assert set(order[:i]) <= ALLOWED[pkg] | ({"eval"} if pkg == "cli" else set())
        assert not set(order[i + 1 :]) & ALLOWED[pkg]
    assert {p for p, allowed in ALLOWED.items() if "api" in allowed} == {"cli"}
    assert {p for p, allowed in ALLOWED.items() if "eval" in allowed} == {"cli"}
    assert not any("cli" in allowed for allowed in ALLOWED.values())
    assert "router" not in ALLOWED["retriever"]
    assert ALLOWED["eval"] == set(order[: order.index("api")])


def _reads_environment(tree: ast.AST) -> list[int]:
    """Lines that read os.environ / os.getenv (``setdefault`` for a third-party runtime is a write)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func
            if target.attr == "getenv" and isinstance(target.value, ast.Name) and target.value.id == "os":
                lines.append(node.lineno)
            if (
                target.attr in ("get", "__getitem__", "copy", "items")
                and isinstance(target.value, ast.Attribute)
                and target.value.attr == "environ"
            ):
                lines.append(node.lineno)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "environ":
            if isinstance(node.ctx, ast.Load):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "cli"])
def test_only_settings_read_the_environment(package: str) -> None:
    """The CLI may pass the environment on to the processes it starts; the product reads settings."""
    bad = {}
    for path in sorted((REPO / package).rglob("*.py")):
        if path == SETTINGS_MODULE:
            continue
        lines = _reads_environment(ast.parse(path.read_text(encoding="utf-8")))
        if lines:
            bad[str(path.relative_to(REPO))] = lines
    assert not bad, f"only openscholar/settings.py reads the environment; found reads at {bad}"


def test_every_package_is_checked() -> None:
    on_disk = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "bench", "scripts"}
    assert on_disk == set(PACKAGES), f"packages not covered by the layering rules: {on_disk ^ set(PACKAGES)}"
