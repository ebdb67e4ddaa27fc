"""The one registry idiom: lazy "module:Class" entries, from_config, unknown names listed, Literal checks."""

from __future__ import annotations

from typing import Literal

import pytest

from datastore.registry import Registry, UnknownName


class _Backend:
    def __init__(self, config: object, extra: int) -> None:
        self.config, self.extra = config, extra

    @classmethod
    def from_config(cls, config: object, *, extra: int = 0) -> _Backend:
        return cls(config, extra)


REG: Registry[_Backend] = Registry(
    "test backend", {"mine": f"{__name__}:_Backend", "ghost": "no_such_module_here:Nothing"}, setting="x.backend"
)


def test_create_uses_from_config_and_imports_lazily() -> None:
    made = REG.create("mine", {"a": 1}, extra=3)
    assert isinstance(made, _Backend) and made.config == {"a": 1} and made.extra == 3
    assert "mine" in REG and "other" not in REG
    with pytest.raises(ModuleNotFoundError):  # only the chosen entry is imported
        REG.get("ghost")


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownName) as info:
        REG.get("mne")
    assert "mne" in info.value.message
    assert "set x.backend to one of: mine, ghost" == info.value.hint
    assert info.value.kind == "invalid_input"


def test_names_are_checked_against_their_literal() -> None:
    REG.check_names(Literal["mine", "ghost", "auto"], besides=["auto"])
    with pytest.raises(AssertionError):
        REG.check_names(Literal["mine"])
