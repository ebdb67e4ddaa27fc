"""Support judges by name (``citations.judge``): one file per judge, one entry here.

Every judge is built the same way: ``from_config(citations_config, llm=..., cache_dir=...)``;
``llm`` is a zero-argument callable giving the answering LLM (loaded only if the judge asks).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from datastore.registry import Registry
from openscholar.config import CitationConfig, JudgeName
from openscholar.judges.protocol import SupportJudge
from openscholar.llm.protocol import LLM

JUDGES: Registry[SupportJudge] = Registry(
    "support judge",
    {
        "stacked": "openscholar.judges.stacked:StackedJudge",
        "trained": "openscholar.judges.trained:TrainedJudge",
        "nli": "openscholar.judges.nli:NLIJudge",
        "llm": "openscholar.judges.llm_judge:LLMJudge",
        "lexical": "openscholar.judges.lexical:LexicalJudge",
    },
    setting="citations.judge",
)
JUDGES.check_names(JudgeName)


def build_judge(
    config: CitationConfig,
    *,
    llm: Callable[[], LLM] | None = None,
    cache_dir: Path | None = None,
    name: str | None = None,
) -> SupportJudge:
    """The support judge named ``name`` (default ``config.judge``); models load on first use."""
    return JUDGES.create(name or config.judge, config, llm=llm, cache_dir=cache_dir)
