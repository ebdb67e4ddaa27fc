"""The one registry idiom: name -> backend class, one registry per protocol, kept outside its module.

Every replaceable part (vector index, sparse backend, embedder, reranker, LLM, support judge) has a
`Registry` built next to its factory. Entries are ``"module:Class"`` strings imported only when
chosen, so an optional dependency loads only for the backend that needs it, and the protocol's
module never imports its own backends. Every backend class has the same constructor,
``from_config(config, **parts)``. The names are a ``Literal`` defined once (in the package's config)
and the registry is checked against it (`Registry.check_names`). An unknown name is an error that
lists the known ones. It sits in the bottom layer so that every package can use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any, Generic, TypeVar, get_args

from datastore.errors import ErrorKind, ScholarError

T = TypeVar("T")


class UnknownName(ScholarError):
    """A registry was asked for a name it does not know; the hint lists the known names."""

    kind: ErrorKind = "invalid_input"


class Registry(Generic[T]):
    """Backends of one protocol by name; ``what`` names the protocol in error messages."""

    def __init__(self, what: str, entries: dict[str, str], *, setting: str = "") -> None:
        self.what = what
        self.setting = setting
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> type[T]:
        """The backend class registered as ``name`` (imported now)."""
        target = self._entries.get(name)
        if target is None:
            where = f"set {self.setting} to " if self.setting else "use "
            raise UnknownName(f"unknown {self.what} {name!r}", hint=f"{where}one of: {', '.join(self._entries)}")
        module_name, _, attr = target.partition(":")
        cls: type[T] = getattr(importlib.import_module(module_name), attr)
        return cls

    def create(self, name: str, config: Any = None, **parts: Any) -> T:
        """``get(name).from_config(config, **parts)``: the uniform constructor of every backend."""
        return self.get(name).from_config(config, **parts)  # type: ignore[attr-defined, no-any-return]

    def check_names(self, literal: Any, *, besides: Iterable[str] = ()) -> None:
        """Raise unless the registry's names are exactly ``literal``'s values (minus ``besides``)."""
        declared = [v for v in get_args(literal) if v not in set(besides)]
        if sorted(declared) != sorted(self._entries):
            raise AssertionError(f"{self.what} registry {sorted(self._entries)} != its Literal {sorted(declared)}")
