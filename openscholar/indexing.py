"""Indexes derived from a datastore's passages, kept in step after build, add and delete."""

from __future__ import annotations

from pathlib import Path

from openscholar.settings import Settings


def refresh_derived_indexes(settings: Settings, root: Path) -> None:
    """Rebuild what depends on the passage set (sparse indexes) after the datastore changed."""
    return None
