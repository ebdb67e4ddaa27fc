"""Every prompt the answer pipeline sends, as data, with its template variables checked at import.

Structure follows the OpenScholar reference: passages listed as ``[i] Title: ... Text: ...``,
the model told to cite ``[i]`` right after each sentence a reference supports. Feedback is asked
for in a fixed line format (``Feedback: ...`` / ``Question: ...``) that ``parse_feedback`` reads.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from openscholar.errors import ConfigError


@dataclass(frozen=True)
class Prompt:
    """A chat prompt: a system message and a user template with exactly ``variables`` in it."""

    name: str
    system: str
    template: str
    variables: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        found = {f for _, f, _, _ in string.Formatter().parse(self.template) if f}
        if found != set(self.variables):
            raise ConfigError(
                f"prompt {self.name!r} uses variables {sorted(found)} but declares {sorted(self.variables)}",
                hint="fix the template or its declared variables in openscholar/prompts.py",
            )

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages for these values; a missing or extra value is an error."""
        if set(values) != set(self.variables):
            raise ConfigError(
                f"prompt {self.name!r} needs {sorted(self.variables)}, got {sorted(values)}",
                hint="this is a bug in the caller of the prompt",
            )
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.template.format(**values)},
        ]


SYSTEM = (
    "You are a helpful scientific research assistant. You answer only from the numbered references "
    "you are given and cite them."
)

CITE_RULES = (
    "Cite the references that support each sentence by writing their numbers in square brackets "
    "right after it, like [0] or [1][2]. Only cite references from the list above. If the "
    "references do not answer the question, say so instead of guessing."
)

ANSWER = Prompt(
    name="answer",
    system=SYSTEM,
    template=(
        "Provide a detailed and informative answer to the following research question, based on the "
        "references below.\n" + CITE_RULES + "\n\nReferences:\n{passages}\n\nQuestion: {question}\nAnswer:"
    ),
    variables=frozenset({"passages", "question"}),
)

CLAIM = Prompt(
    name="claim",
    system=SYSTEM,
    template=(
        "Given the references below, is the following scientific claim true or false? Start your answer "
        "with 'True' or 'False', then explain in a few sentences.\n" + CITE_RULES
        + "\n\nReferences:\n{passages}\n\nClaim: {question}\nAnswer:"
    ),
    variables=frozenset({"passages", "question"}),
)

YES_NO = Prompt(
    name="yes_no",
    system=SYSTEM,
    template=(
        "Given the references below, answer the following question with 'Yes' or 'No' first, then "
        "explain in a few sentences.\n" + CITE_RULES + "\n\nReferences:\n{passages}\n\nQuestion: {question}\nAnswer:"
    ),
    variables=frozenset({"passages", "question"}),
)

FEEDBACK = Prompt(
    name="feedback",
    system=SYSTEM,
    template=(
        "Here is a research question and an answer written from the references. Give up to three "
        "short pieces of feedback that would make the answer more complete or more accurate. Write "
        "each as a line 'Feedback: ...'. If more literature is needed for a piece of feedback, add "
        "a line 'Question: ...' right after it with a search query. If the answer needs no "
        "improvement, write 'Feedback: none'.\n\nReferences:\n{passages}\n\nQuestion: {question}\n"
        "Answer: {answer}\n\nFeedback:"
    ),
    variables=frozenset({"passages", "question", "answer"}),
)

EDIT = Prompt(
    name="edit",
    system=SYSTEM,
    template=(
        "Revise the answer to the research question so that it addresses the feedback. Keep every "
        "correct statement and its citations; add information only from the references. "
        + CITE_RULES + " Write only the revised answer.\n\nReferences:\n{passages}\n\nQuestion: {question}\n"
        "Answer: {answer}\n\nFeedback: {feedback}\n\nEdited Answer:"
    ),
    variables=frozenset({"passages", "question", "answer", "feedback"}),
)

SUPPORT = Prompt(
    name="support",
    system="You check whether a scientific passage supports a statement. Reply with Yes or No only.",
    template="Passage:\nTitle: {title}\nText: {text}\n\nStatement: {statement}\n\nDoes the passage support the statement? Answer Yes or No:",
    variables=frozenset({"title", "text", "statement"}),
)

TASK_PROMPTS: dict[str, Prompt] = {"long_form": ANSWER, "claim": CLAIM, "yes_no": YES_NO}
ALL_PROMPTS: dict[str, Prompt] = {p.name: p for p in (ANSWER, CLAIM, YES_NO, FEEDBACK, EDIT, SUPPORT)}

OUT_OF_TIME = (
    "The model did not write an answer within its time budget (answer.budgets.generate_s); the "
    "passages found are returned without an answer."
)
NO_EVIDENCE = (
    "I could not find passages in the datastore that are relevant to this question, so I cannot "
    "answer it from the literature."
)
UNSUPPORTED = (
    "The passages I found do not support an answer to this question: none of the statements I could "
    "write was backed by them, so I will not give one."
)
UNSUPPORTED_VERDICT = (
    "{verdict}. This verdict is the model's own: none of the passages I found supports it, so it "
    "carries no citation."
)


def format_passage(index: int, title: str, text: str) -> str:
    """One reference as the model sees it."""
    return f"[{index}] Title: {title.strip() or '(untitled)'} Text: {' '.join(text.split())}"


def prompt_kind(messages: list[dict[str, str]]) -> str | None:
    """Which prompt of this module produced ``messages`` (the scripted LLM uses this)."""
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    for prompt in ALL_PROMPTS.values():
        head = prompt.template.split("{")[0][:60]
        tail = prompt.template.rsplit("}", 1)[-1]
        if user.startswith(head) and user.endswith(tail):
            return prompt.name
    return None
