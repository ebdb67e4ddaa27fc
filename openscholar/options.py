"""What a caller may choose per request: `AnswerOptions`, and the passages it may supply itself.

Validated where the request enters (CLI, API: a bad supplied passage is a 422 there, never a job
that fails on the worker), then passed to the answer loop as typed data.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from datastore.models import PassageData
from datastore.strict import StrictModel
from openscholar.answer import Task
from retriever.config import PipelineName

MAX_SUPPLIED_PASSAGES = 100
MAX_SUPPLIED_CHARS = 20_000
MAX_OPTION_TOKENS = 4096


class SuppliedPassage(PassageData, StrictModel):
    """A passage the caller supplies instead of retrieval: a non-empty ``text``, the rest optional."""

    passage_id: None = Field(None, description="Not accepted: supplied passages are not datastore passages.")
    text: str = Field(min_length=1, max_length=MAX_SUPPLIED_CHARS, description="The passage text (required).")
    year: int | None = Field(None, ge=0, le=3000, description="Publication year.")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a supplied passage needs a non-empty 'text'")
        return value.strip()


class AnswerOptions(StrictModel):
    """Per-request choices; None means "as configured in settings"."""

    feedback: bool = Field(True, description="Run the self-feedback loop.")
    verify: bool = Field(True, description="Verify citations with the support judge.")
    top_k: int | None = Field(None, ge=1, le=100, description="Passages shown to the model.")
    pipeline: PipelineName | None = Field(
        None, description="Retrieval pipeline (settings.retrieval.pipeline if None)."
    )
    passages: list[SuppliedPassage] | None = Field(
        None,
        max_length=MAX_SUPPLIED_PASSAGES,
        description="Caller-supplied passages (text, optional title, paper_id, url, year, authors, venue); when "
        "given, no retrieval.",
    )
    task: Task = Field("long_form", description="Answer format.")
    max_tokens: int | None = Field(
        None, ge=1, le=MAX_OPTION_TOKENS, description="Completion budget per LLM call (at most 4096)."
    )
