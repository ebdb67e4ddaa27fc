"""Judge name -> backend (``citations.judge``), in the one registry idiom (`datastore.registry`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datastore.registry import Registry
from openscholar.config import JudgeName
from openscholar.judges.protocol import SupportJudge

JUDGES: Registry[SupportJudge] = Registry(
    "support judge",
    {
        "trained": "openscholar.judges.trained:TrainedJudge",
        "nli": "openscholar.judges.nli:NLIJudge",
        "llm": "openscholar.judges.llm_judge:LLMJudge",
        "lexical": "openscholar.judges.lexical:LexicalJudge",
    },
    setting="citations.judge",
)
JUDGES.check_names(JudgeName)


def build_judge(settings: Any, *, llm: Callable[[], Any] | Any = None, name: str | None = None) -> SupportJudge:
    """The support judge named ``name`` or ``settings.citations.judge`` (models load on first use).
    The llm judge asks ``llm`` (an LLM or a function returning one), else the configured LLM."""
    name = name or settings.citations.judge
    if name == "llm" and llm is None:
        from openscholar.llm import build_llm

        llm = build_llm(settings.llm)
    return JUDGES.create(name, settings.citations, llm=llm, cache_path=settings.cache_path)
