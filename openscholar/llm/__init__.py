"""LLM backends behind one protocol; ``build_llm(config)`` picks one by name."""

from openscholar.llm.protocol import (
    LLM,
    Completion,
    LLMError,
    LLMOutOfTime,
    LLMUnavailable,
    Message,
)
from openscholar.llm.registry import LLMS, build_llm

__all__ = ["LLM", "LLMS", "Completion", "LLMError", "LLMOutOfTime", "LLMUnavailable", "Message", "build_llm"]
