"""Errors of the retriever layer."""

from __future__ import annotations

from datastore.errors import ErrorKind, ScholarError


class RetrieverError(ScholarError):
    kind: ErrorKind = "invalid_input"


class ModelUnavailable(RetrieverError):
    """A model cannot be loaded (not packaged, not cached, no network)."""

    kind: ErrorKind = "unavailable"


class UnknownBackend(RetrieverError):
    """A registry was asked for a name it does not know; the message lists the known ones."""

    def __init__(self, protocol: str, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown {protocol} {name!r}", hint=f"use one of: {', '.join(sorted(known))}"
        )


class DeviceUnavailable(ModelUnavailable):
    """``embedder.device`` names a device this process cannot use (no CUDA build, no GPU, wrong index)."""


class LuceneOutOfHeap(RetrieverError):
    """Lucene needed more Java heap than its JVM was started with; the hint names the setting to raise."""

    kind: ErrorKind = "unavailable"
