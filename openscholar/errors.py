"""Errors of the composition root (settings, LLM, answer pipeline)."""

from __future__ import annotations

from datastore.errors import ErrorKind, ScholarError


class ConfigError(ScholarError):
    """Settings are invalid or a config file is missing."""

    kind: ErrorKind = "invalid_input"
