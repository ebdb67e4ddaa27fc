"""Errors of the datastore layer, and the base every package's errors derive from.

Every error a user can cause or meet says what went wrong and what to do (``hint``), and whether
trying again may help (``retryable``). ``kind`` lets the API map any of them to an HTTP status in
one handler without knowing each class.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["invalid_input", "not_found", "unavailable", "conflict", "too_large", "internal"]


class ScholarError(Exception):
    """Base of all domain errors: a message, a hint on what to do, and whether to retry."""

    kind: ErrorKind = "internal"
    retryable: bool = False

    def __init__(self, message: str, *, hint: str = "", retryable: bool | None = None) -> None:
        self.message = message
        self.hint = hint
        if retryable is not None:
            self.retryable = retryable
        super().__init__(f"{message}: {hint}" if hint else message)

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "kind": self.kind,
            "message": self.message,
            "hint": self.hint,
            "retryable": self.retryable,
        }


class DatastoreError(ScholarError):
    """Something is wrong with a datastore directory or its use."""

    kind: ErrorKind = "conflict"


class DatastoreNotFound(DatastoreError):
    kind: ErrorKind = "not_found"


class DatastoreIncomplete(DatastoreError):
    """A build was interrupted: the directory must not be used until the build finishes."""


class DatastoreCorrupted(DatastoreError):
    """A shard is missing, truncated or does not match its checksum or counts."""


class EncoderMismatch(DatastoreError):
    """The query encoder is not the one the datastore's vectors were built with."""


class SourceError(ScholarError):
    """A corpus source cannot be read or has malformed records under ``--strict``."""

    kind: ErrorKind = "invalid_input"


class MissingExtra(ScholarError, ImportError):
    """An optional dependency is not installed; the hint names the extra."""

    kind: ErrorKind = "unavailable"

    def __init__(self, package: str, extra: str) -> None:
        ScholarError.__init__(
            self,
            f"the optional package {package!r} is not installed",
            hint=f"install the extra: pip install 'openscholar[{extra}]'",
        )
