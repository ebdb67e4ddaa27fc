"""Typed configuration of RouterRetriever."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class RouterConfig(BaseModel):
    """Domain-expert query encoders (LoRA on the base encoder) routed by pilot embeddings."""

    experts_dir: Path | None = Field(
        None, description="Directory of trained experts; None uses <cache_dir>/experts."
    )
    lora_rank: int = Field(8, ge=1, description="LoRA rank of each expert (paper: 8).")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha of each expert (paper: 32).")
