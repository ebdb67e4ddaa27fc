"""`TrainingLoop`: the one optimizer loop of every model trained here, and `LoopRecord`, what it did.

A trainer (expert, reranker, judge) creates the loop first (it seeds the generators and sets the
threads, so the model it builds next is initialised the same way on every run), builds its model,
batches and loss, marks the forward passes that may run in bf16 with ``loop.autocast()``, and calls
``loop.run``. The loop owns AdamW, the schedule, clipping, the progress bar, logging and the
wall-clock cap, and returns a `LoopRecord` for the artifact's manifest.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import Field

from datastore.strict import StrictModel
from retriever.training.recipe import LoopRecipe, Schedule, resolve_bf16, seed_everything, set_threads

log = logging.getLogger(__name__)

B = TypeVar("B")
StopReason = Literal["planned", "max_steps", "max_seconds", "batches_ran_out"]


@dataclass
class ParamGroup:
    """Parameters trained at one learning rate (e.g. LoRA weights at 5e-4, a small head at 1e-2)."""

    params: Sequence[Any]
    lr: float


class LoopRecord(StrictModel):
    """What one run of the loop did: every artifact trained here records it in its manifest."""

    steps: int = Field(description="Optimizer steps taken.")
    planned_steps: int = Field(description="Steps the data and the recipe planned (after max_steps).")
    stop_reason: StopReason = Field("planned", description="Why the loop ended: planned steps done, max_steps, the wall-clock cap, or no more batches.")
    train_seconds: float = Field(description="Wall-clock seconds of the optimizer loop (the CPU may be shared: see cpu seconds).")
    train_cpu_seconds: float = Field(description="CPU seconds this process used in the loop.")
    loss_first20: float | None = Field(None, description="Mean loss of the first 20 steps.")
    loss_last20: float | None = Field(None, description="Mean loss of the last 20 steps.")
    loss_curve: list[float] = Field(default_factory=list, description="Mean loss of each window of curve_every steps, in order.")
    curve_every: int = Field(1, ge=1, description="Steps per loss_curve point (about 100 points at most).")
    torch_threads: int = Field(description="torch CPU threads during training.")
    bf16_autocast: bool = Field(description="Whether the marked forward passes ran under bf16 autocast.")
    seed: int
    schedule: Schedule
    warmup_steps: int
    learning_rates: list[float] = Field(description="Peak learning rate of each parameter group.")
    weight_decay: float
    max_grad_norm: float | None = None

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason == "max_seconds"


class TrainingLoop(Generic[B]):
    """Seeds and sets threads on creation; ``run`` trains ``groups`` on ``batches`` with ``loss_fn``."""

    def __init__(self, recipe: LoopRecipe, *, name: str, progress: bool = True) -> None:
        self.recipe = recipe
        self.name = name
        self.progress = progress
        set_threads(recipe.threads)
        seed_everything(recipe.seed)
        self.bf16 = resolve_bf16(recipe.precision)
        self.losses: list[float] = []

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CPU when the recipe's precision says so, else a no-op context."""
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def total_steps(self, planned: int) -> int:
        """The steps a run of ``planned`` batches takes: at least 1, at most the recipe's max_steps."""
        cap = self.recipe.max_steps
        return max(1, min(planned, cap) if cap is not None else planned)

    def _scheduler(self, opt: Any, lrs: list[float], total: int) -> tuple[Any, int]:
        import torch

        r = self.recipe
        if r.schedule == "one_cycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=lrs if len(lrs) > 1 else lrs[0], total_steps=total, pct_start=r.warmup_fraction
            )
            return sched, math.floor(r.warmup_fraction * total + 1e-9)
        warmup = max(1, math.floor(total * r.warmup_fraction + 1e-9))  # 0.1: total // 10, as before

        def factor(s: int) -> float:  # linear warmup to the peak, then linear decay to 0 at `total`
            return min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor), warmup

    def run(
        self,
        model: Any,
        groups: Sequence[ParamGroup],
        batches: Iterable[B],
        loss_fn: Callable[[B], Any],
        planned_steps: int,
    ) -> LoopRecord:
        """Train: for each batch, ``loss_fn(batch)`` -> backward -> clip -> AdamW step -> schedule step.

        ``model`` is put in train mode for the loop and in eval mode after it. ``planned_steps`` is
        how many batches ``batches`` yields (it may yield more: the loop takes what it plans).
        """
        import numpy as np
        import torch

        r = self.recipe
        total = self.total_steps(planned_steps)
        lrs = [float(g.lr) for g in groups]
        opt = torch.optim.AdamW([{"params": list(g.params), "lr": g.lr} for g in groups], weight_decay=r.weight_decay)
        sched, warmup = self._scheduler(opt, lrs, total)
        params = [p for g in groups for p in g.params]
        bar: Any = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, desc=self.name, unit="step")
        model.train()
        losses = self.losses = []
        reason: StopReason = "planned" if total == planned_steps else "max_steps"
        it = iter(batches)
        start, cpu_start = time.monotonic(), time.process_time()
        for step in range(total):
            try:
                batch = next(it)
            except StopIteration:
                reason = "batches_ran_out"
                break
            loss = loss_fn(batch)
            opt.zero_grad()
            loss.backward()
            if r.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, r.max_grad_norm)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            if (step + 1) % r.log_every == 0:
                log.info("%s: step %d/%d loss %.4f (%.0fs)", self.name, step + 1, total, np.mean(losses[-r.log_every:]),
                         time.monotonic() - start)
            if r.max_seconds is not None and time.monotonic() - start > r.max_seconds and step + 1 < total:
                log.warning("%s: stopped at step %d of %d (max_seconds %.0f)", self.name, step + 1, total, r.max_seconds)
                reason = "max_seconds"
                break
        seconds, cpu_seconds = time.monotonic() - start, time.process_time() - cpu_start
        if bar is not None:
            bar.close()
        model.eval()
        every = max(1, -(-len(losses) // 100))
        curve = [round(float(np.mean(losses[i : i + every])), 5) for i in range(0, len(losses), every)]
        return LoopRecord(
            steps=len(losses),
            planned_steps=total,
            stop_reason=reason,
            train_seconds=round(seconds, 2),
            train_cpu_seconds=round(cpu_seconds, 2),
            loss_first20=round(float(np.mean(losses[:20])), 4) if losses else None,
            loss_last20=round(float(np.mean(losses[-20:])), 4) if losses else None,
            loss_curve=curve,
            curve_every=every,
            torch_threads=torch.get_num_threads(),
            bf16_autocast=self.bf16,
            seed=r.seed,
            schedule=r.schedule,
            warmup_steps=warmup,
            learning_rates=lrs,
            weight_decay=r.weight_decay,
            max_grad_norm=r.max_grad_norm,
        )
