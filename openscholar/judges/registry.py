"""Judge name -> factory (citations.judge in settings)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openscholar.errors import ConfigError
from openscholar.judges.protocol import SupportJudge

JUDGES = ("trained", "llm", "lexical")


def build_judge(settings: Any, *, llm: Callable[[], Any] | Any = None, name: str | None = None) -> SupportJudge:
    """The support judge named by ``settings.citations.judge`` (models load on first use)."""
    name = name or settings.citations.judge
    if name == "lexical":
        from openscholar.judges.lexical import LexicalJudge

        return LexicalJudge()
    if name == "llm":
        from openscholar.judges.llm_judge import LLMJudge

        if llm is None:
            from openscholar.llm import build_llm

            return LLMJudge(build_llm(settings.llm))
        return LLMJudge(llm)
    if name == "trained":
        from openscholar.judges.cross_encoder import CrossEncoderJudge

        return CrossEncoderJudge.from_settings(settings)
    raise ConfigError(f"unknown support judge {name!r}", hint=f"set citations.judge to one of: {', '.join(JUDGES)}")
