"""The LLM protocol: chat messages in, a `Completion` with token usage out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from datastore.errors import ErrorKind, ScholarError


@dataclass(slots=True)
class Message:
    """One chat message; backends take the plain-dict form (``Message.to_dict()``)."""

    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(slots=True)
class Completion:
    """What a backend returns for one request."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str | None = None


@runtime_checkable
class LLM(Protocol):
    """A chat model. ``params`` understood by every backend: max_tokens, temperature, stop, and
    time_limit_s: the backend stops there and returns what it has with ``finish_reason`` "time", or
    raises `LLMOutOfTime` when it has nothing to return."""

    model_id: str

    def complete(self, messages: list[dict[str, str]], **params: Any) -> Completion: ...


class LLMError(ScholarError):
    """The LLM could not produce a completion."""

    kind: ErrorKind = "internal"


class LLMUnavailable(LLMError):
    """The LLM endpoint timed out, refused the connection or answered with a server error."""

    kind: ErrorKind = "unavailable"
    retryable = True


class LLMOutOfTime(LLMError):
    """A call ran out of the time limit its caller gave it before the model returned anything."""

    kind: ErrorKind = "unavailable"
    retryable = False


def as_dicts(messages: list[dict[str, str]] | list[Message]) -> list[dict[str, str]]:
    """Accept either form of messages."""
    return [m.to_dict() if isinstance(m, Message) else {"role": m["role"], "content": m["content"]} for m in messages]
