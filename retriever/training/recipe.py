"""`LoopRecipe`: how the shared training loop runs (everything but the model, the data and the loss).

Each trainer keeps its own typed config (what it trains on, the model's shape) and maps it onto a
`LoopRecipe` with a ``loop_recipe()`` method, so the loop's knobs are named and checked once.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from datastore.strict import StrictModel

Precision = Literal["auto", "fp32", "bf16"]
Schedule = Literal["linear", "one_cycle"]


class LoopRecipe(StrictModel):
    """The optimizer loop's settings: seed, threads, precision, schedule, caps."""

    seed: int = Field(13, description="Seed of python's, numpy's and torch's global generators, set before the model is built.")
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 keeps torch's default.")
    precision: Precision = Field(
        "auto",
        description="bf16 autocast of the forward passes the trainer marks (`TrainingLoop.autocast`); weights, "
        "optimizer state and the loss stay fp32. auto: bf16 exactly when the CPU has native bf16 (AVX512-BF16 "
        "or AMX; emulated bf16 is many times slower than fp32).",
    )
    schedule: Schedule = Field(
        "linear",
        description="Learning-rate schedule. linear: warmup over warmup_fraction of the steps (at least one), then "
        "linear decay to 0. one_cycle: torch's OneCycleLR (cosine, with cycled Adam beta1) peaking at each group's "
        "learning rate after warmup_fraction of the steps.",
    )
    warmup_fraction: float = Field(0.1, gt=0, le=1, description="Fraction of the planned steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float | None = Field(None, gt=0, description="Clip the gradient norm of all trained parameters; None: no clipping.")
    max_steps: int | None = Field(None, ge=1, description="Upper bound on optimizer steps; None: every planned batch.")
    max_seconds: float | None = Field(
        None, gt=0, description="Wall-clock cap of the optimizer loop; the loop stops after the step that passes it and records the stop."
    )
    log_every: int = Field(25, ge=1, description="Log the mean loss every this many steps.")


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (LoRA init, dropout, sampling)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    """torch CPU threads (0 keeps torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def resolve_bf16(precision: Precision) -> bool:
    """Whether bf16 autocast is on: as asked, or under auto exactly when the CPU has native bf16."""
    if precision == "auto":
        from retriever.st_embedder import cpu_has_native_bf16

        return bool(cpu_has_native_bf16())
    return precision == "bf16"
