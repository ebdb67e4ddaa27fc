"""A support judge that asks an LLM (any backend of the LLM protocol) which relation holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from openscholar.judges.protocol import Judgement, support_scores
from openscholar.llm.protocol import LLM
from openscholar.prompts import SUPPORT

_SUPPORTS = Judgement(1.0, 0.0, 0.0)
_CONTRADICTS = Judgement(0.0, 1.0, 0.0)
_NEITHER = Judgement(0.0, 0.0, 1.0)
_UNREADABLE = Judgement(0.5, 0.0, 0.5)


def read_relation(reply: str) -> Judgement:
    """The model's one-word reply: Supports (or Yes), Contradicts, Neither (or No); anything else is
    unreadable and scores 0.5 support, below the default threshold."""
    word = reply.strip().lower()
    if word.startswith(("support", "yes")):
        return _SUPPORTS
    if word.startswith(("contradict", "refute")):
        return _CONTRADICTS
    if word.startswith(("neither", "no", "not enough")):
        return _NEITHER
    return _UNREADABLE


class LLMJudge:
    """One short completion per pair, read by `read_relation`."""

    name = "llm"
    threshold = 0.5

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

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        out = []
        for statement, passage in pairs:
            title, _, text = passage.partition("\n") if "\n" in passage else ("", "", passage)
            messages = SUPPORT.render(title=title, text=text[: self.max_chars], statement=statement)
            out.append(read_relation(self.llm.complete(messages, max_tokens=3, temperature=0.0).text))
        return out

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return support_scores(self.judge(pairs))
