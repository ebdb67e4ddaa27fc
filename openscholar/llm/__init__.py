"""LLM backends behind one protocol; ``build_llm(config)`` picks one by name."""

from openscholar.llm.protocol import LLM, Completion, LLMError, LLMUnavailable, Message
from openscholar.llm.registry import BACKENDS, build_llm

__all__ = ["BACKENDS", "LLM", "Completion", "LLMError", "LLMUnavailable", "Message", "build_llm"]
