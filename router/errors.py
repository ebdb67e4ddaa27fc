"""Errors of the router layer."""

from __future__ import annotations

from datastore.errors import ErrorKind, ScholarError


class RouterError(ScholarError):
    kind: ErrorKind = "invalid_input"


class NoExperts(RouterError):
    """The experts directory holds no usable expert or no pilots."""

    kind: ErrorKind = "unavailable"


class ExpertNotFound(RouterError):
    """An expert name that is not in the experts directory."""

    kind: ErrorKind = "not_found"


class ExpertMismatch(RouterError):
    """An expert was trained on another base encoder than the one configured."""
