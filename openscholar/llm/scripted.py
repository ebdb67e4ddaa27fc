"""A scripted LLM: fixed replies or a function, for testing the loop's control flow and offline demos.

With no script it still answers sensibly and deterministically: an answer built from the sentence
of each of the first three references that best matches the question, each cited (so [0] is always cited when any passage is
shown), no feedback, an edit that returns the answer unchanged, and a word-overlap support verdict.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from openscholar.config import LLMConfig
from openscholar.llm.protocol import Completion, LLMOutOfTime, as_dicts

Reply = str | Callable[[list[dict[str, str]]], "str | None"]

_REF = re.compile(r"^\[(\d+)\] Title: (.*?) Text: (.*)$", re.MULTILINE)
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(["a", "an", "the", "of", "in", "on", "and", "or", "to", "is", "are", "was", "were", "be", "for", "with", "by", "as", "at", "from", "that", "this", "it", "its"])


class ScriptedLLM:
    """Returns ``replies`` in order (a string, or a function of the messages returning a string or
    None for the default), then the default reply. ``calls`` records (prompt kind, messages)."""

    def __init__(self, replies: Sequence[Reply] = (), *, fn: Callable[[list[dict[str, str]]], str | None] | None = None,
                 model_id: str = "scripted", seconds_per_word: float = 0.0) -> None:
        self.model_id = model_id
        # Simulated generation speed: a reply takes words x seconds_per_word, and a call's
        # time_limit_s cuts it where a real model would stop (finish_reason "time").
        self.seconds_per_word = seconds_per_word
        self._replies = list(replies)
        self._fn = fn
        self.calls: list[tuple[str | None, list[dict[str, str]]]] = []

    @classmethod
    def from_config(cls, config: LLMConfig, **kwargs: Any) -> ScriptedLLM:
        kwargs.setdefault("model_id", "scripted")
        return cls(**kwargs)

    def warm_up(self) -> ScriptedLLM:
        return self

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, messages: list[dict[str, str]], **params: Any) -> Completion:
        from openscholar.prompts import prompt_kind

        messages = as_dicts(messages)
        kind = prompt_kind(messages)
        self.calls.append((kind, messages))
        text: str | None = None
        if self._replies:
            reply = self._replies.pop(0)
            text = reply(messages) if callable(reply) else reply
        if text is None and self._fn is not None:
            text = self._fn(messages)
        if text is None:
            text = default_reply(kind, messages)
        limit = params.get("max_tokens")
        if limit and len(text.split()) > int(limit):  # honour the budget like a real model (words ~ tokens)
            text = " ".join(text.split()[: int(limit)])
        finish = "stop"
        if self.seconds_per_word > 0:
            words = text.split()
            time_limit = params.get("time_limit_s")
            fits = len(words) if time_limit is None else int(float(time_limit) / self.seconds_per_word)
            if fits < len(words):
                if fits <= 0:
                    time.sleep(float(time_limit or 0))
                    raise LLMOutOfTime("the scripted model wrote nothing within the time limit")
                words, finish = words[:fits], "time"
            time.sleep(len(words) * self.seconds_per_word)
            text = " ".join(words)
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        return Completion(text, prompt_tokens, len(text.split()), self.model_id, finish)


def default_reply(kind: str | None, messages: list[dict[str, str]]) -> str:
    """The deterministic reply for a prompt of ``openscholar.prompts``."""
    user = messages[-1]["content"] if messages else ""
    if kind == "feedback":
        return "Feedback: none"
    if kind == "edit":
        match = re.search(r"\nAnswer: (.*?)\n\nFeedback: ", user, re.DOTALL)
        return match.group(1).strip() if match else ""
    if kind == "support":
        return "Yes" if support_overlap(user) >= 0.5 else "No"
    refs = [(int(i), title, text) for i, title, text in _REF.findall(user)]
    if not refs:
        return "The references do not answer this question; I found no relevant evidence."
    asked = re.search(r"\n(?:Question|Claim): (.*)\n", user)
    words = _content_words(asked.group(1)) if asked else set()
    sentences = [f"{_best_sentence(text, words).rstrip('.')} [{i}]." for i, _, text in refs[:3]]
    body = " ".join(sentences)
    if kind == "claim":
        return f"True. {body}"
    if kind == "yes_no":
        return f"Yes. {body}"
    return body


def _best_sentence(text: str, question_words: set[str]) -> str:
    """The passage sentence sharing the most words with the question (the first on ties), <= 40 words."""
    parts = [p for p in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", text.strip()) if p.strip()] or [text]
    best = max(range(len(parts)), key=lambda i: (len(_content_words(parts[i]) & question_words), -i))
    return " ".join(parts[best].split()[:40])


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def support_overlap(user: str) -> float:
    """Share of the statement's content words found in the passage of a support prompt."""
    match = re.search(r"Text: (.*?)\n\nStatement: (.*?)\n\n", user, re.DOTALL)
    if not match:
        return 0.0
    passage, statement = _content_words(match.group(1)), _content_words(match.group(2))
    return len(statement & passage) / len(statement) if statement else 0.0
