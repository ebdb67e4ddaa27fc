"""A support judge that asks the answering LLM (any backend of the LLM protocol) Yes or No."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from openscholar.llm.protocol import LLM
from openscholar.prompts import SUPPORT


class LLMJudge:
    """1.0 when the model's reply starts with yes, 0.0 with no, 0.5 when it says neither."""

    name = "llm"

    def __init__(self, llm: LLM | Callable[[], LLM], max_chars: int = 2000) -> None:
        self._llm = llm
        self.max_chars = max_chars

    @classmethod
    def from_config(cls, config: object = None, *, llm: Callable[[], LLM] | None = None, **_: object) -> LLMJudge:
        """A judge asking ``llm()`` (the answering model; built from defaults when none is given)."""
        if llm is None:
            from openscholar.llm import build_llm

            return cls(build_llm())
        return cls(llm)

    @property
    def llm(self) -> LLM:
        return self._llm if hasattr(self._llm, "complete") else self._llm()  # type: ignore[operator,return-value]

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        scores = []
        for statement, passage in pairs:
            title, _, text = passage.partition("\n") if "\n" in passage else ("", "", passage)
            messages = SUPPORT.render(title=title, text=text[: self.max_chars], statement=statement)
            reply = self.llm.complete(messages, max_tokens=3, temperature=0.0).text.strip().lower()
            scores.append(1.0 if reply.startswith("yes") else 0.0 if reply.startswith("no") else 0.5)
        return scores
