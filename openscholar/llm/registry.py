"""Backend name -> factory. One backend = one file + one entry here."""

from __future__ import annotations

import importlib
from typing import Any

from openscholar.config import LLMConfig
from openscholar.errors import ConfigError
from openscholar.llm.protocol import LLM

# name -> "module:Class"; imported only when chosen, so heavy deps load lazily.
BACKENDS: dict[str, str] = {
    "openai": "openscholar.llm.openai_http:OpenAIChatLLM",
    "transformers": "openscholar.llm.local_transformers:TransformersLLM",
    "scripted": "openscholar.llm.scripted:ScriptedLLM",
}


def build_llm(config: LLMConfig | None = None, **kwargs: Any) -> LLM:
    """The LLM backend named by ``config.backend`` (not loaded until first use or ``warm_up()``)."""
    config = config or LLMConfig()
    target = BACKENDS.get(config.backend)
    if target is None:
        raise ConfigError(
            f"unknown LLM backend {config.backend!r}",
            hint=f"set llm.backend to one of: {', '.join(sorted(BACKENDS))}",
        )
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls.from_config(config, **kwargs)
