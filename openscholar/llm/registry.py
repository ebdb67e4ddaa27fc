"""LLM backends by name (``llm.backend``): one file per backend, one entry here."""

from __future__ import annotations

from typing import Any

from datastore.registry import Registry
from openscholar.config import LLMBackend, LLMConfig
from openscholar.llm.protocol import LLM

# name -> "module:Class"; imported only when chosen, so heavy deps load lazily.
LLMS: Registry[LLM] = Registry(
    "LLM backend",
    {
        "transformers": "openscholar.llm.local_transformers:TransformersLLM",
        "openai": "openscholar.llm.openai_http:OpenAIChatLLM",
        "scripted": "openscholar.llm.scripted:ScriptedLLM",
    },
    setting="llm.backend",
)
LLMS.check_names(LLMBackend)


def build_llm(config: LLMConfig | None = None, **parts: Any) -> LLM:
    """The LLM backend named by ``config.backend`` (not loaded until first use or ``warm_up()``)."""
    config = config or LLMConfig()
    return LLMS.create(config.backend, config, **parts)
