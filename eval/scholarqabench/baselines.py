"""Closed-book baseline: the same LLM answering with no passages, so the pipeline's contribution
(retrieval, then feedback and verification) is measured against the bare model.

Prompts mirror the pipeline's task prompts (openscholar.prompts) minus the references and the
citation rules, so the only difference is the evidence.
"""

from __future__ import annotations

from typing import Any

from openscholar.prompts import Prompt

SYSTEM = "You are a helpful scientific research assistant."

CLOSED_BOOK: dict[str, Prompt] = {
    "claim": Prompt(
        name="closed_book_claim", system=SYSTEM,
        template=("Is the following scientific claim true or false? Start your answer with 'True' or 'False', "
                  "then explain in a few sentences.\n\nClaim: {question}\nAnswer:"),
        variables=frozenset({"question"}),
    ),
    "yes_no": Prompt(
        name="closed_book_yes_no", system=SYSTEM,
        template=("Answer the following question with 'Yes' or 'No' first, then explain in a few sentences."
                  "\n\nQuestion: {question}\nAnswer:"),
        variables=frozenset({"question"}),
    ),
    "long_form": Prompt(
        name="closed_book_long_form", system=SYSTEM,
        template="Provide a detailed and informative answer to the following research question.\n\n"
                 "Question: {question}\nAnswer:",
        variables=frozenset({"question"}),
    ),
}


def closed_book_answer(llm: Any, question: str, task: str, max_tokens: int | None = None) -> dict[str, Any]:
    """The LLM's answer with no passages: ``output`` and token usage."""
    params: dict[str, Any] = {"temperature": 0.0}
    if max_tokens:
        params["max_tokens"] = max_tokens
    completion = llm.complete(CLOSED_BOOK[task].render(question=question), **params)
    return {"output": completion.text.strip(), "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens}
