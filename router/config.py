"""Typed configuration of RouterRetriever."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from datastore.strict import StrictModel
from retriever.training.recipe import LoopRecipe

# Where `experts_dir=None` looks first: the experts trained in this repository and committed beside
# this file, so routing works out of the box.
PACKAGED_EXPERTS = Path(__file__).resolve().parent / "experts"


class ExpertTrainingConfig(StrictModel):
    """The recipe `openscholar router train-expert` uses for one expert's query-side LoRA."""

    batch_size: int = Field(32, ge=2, description="Queries per step; the other queries' positives are in-batch negatives.")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate of the LoRA weights (linear warmup 10%, linear decay).")
    temperature: float = Field(0.05, gt=0, description="Softmax temperature of the contrastive loss (MiniLM was trained at scale 20).")
    epochs: float = Field(6.0, gt=0, description="Passes over the training pairs (before max_steps caps them).")
    max_steps: int = Field(300, ge=1, description="Upper bound on optimizer steps (keeps each expert to a few CPU minutes).")
    max_seconds: float = Field(900.0, gt=0, description="Wall-clock cap of one expert's training; stops early, recorded in the manifest.")
    corpus_negatives: bool = Field(
        True, description="Also rank every frozen datastore vector as a negative (the full-corpus softmax)."
    )
    seed: int = Field(13, description="Seed of the LoRA init, the batch order and the pilot-set sample.")
    bf16: bool | None = Field(
        None,
        description="bf16 autocast for the forward pass on CPU (about 1.7x faster steps on AVX512-BF16/AMX "
        "CPUs; emulated and far slower elsewhere); LoRA weights and the loss stay fp32. None: on exactly "
        "when the CPU has native bf16.",
    )
    threads: int = Field(0, ge=0, description="torch CPU threads while training; 0 keeps torch's default (1 is fastest on a busy 2-core box).")

    def loop_recipe(self) -> LoopRecipe:
        """The shared loop's settings for this recipe: AdamW without weight decay or clipping, linear
        warmup over 10% of the steps then linear decay, capped by max_steps and max_seconds."""
        precision = {None: "auto", True: "bf16", False: "fp32"}[self.bf16]
        return LoopRecipe(seed=self.seed, threads=self.threads, precision=precision, schedule="linear",
                          warmup_fraction=0.1, weight_decay=0.0, max_grad_norm=None, max_steps=self.max_steps,
                          max_seconds=self.max_seconds)


class RouterConfig(StrictModel):
    """Domain-expert query encoders (LoRA on the base encoder) routed by pilot embeddings."""

    experts_dir: Path | None = Field(
        None,
        description="Directory of trained experts (adapters, manifests, pilots.json). None uses the "
        "experts committed with the package (router/experts) if present, else <cache_dir>/experts.",
    )
    lora_rank: int = Field(8, ge=1, description="LoRA rank of each expert (paper: 8).")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha of each expert (paper: 32).")
    experts: list[str] | None = Field(
        None, description="Experts the router may pick; None uses every expert that has pilots."
    )
    pilot_queries: int = Field(
        200, ge=1, description="Training queries per domain kept (seeded sample) to compute pilot embeddings from."
    )
    pilot_holdout: float = Field(
        0.25, ge=0.0, lt=1.0,
        description="Hold the pilot queries out of the expert's training (at most this fraction of the "
        "domain's queries; 0 samples pilots from the training queries, as before). Held-out pilots measure "
        "which expert generalizes to a query, not which one memorized it (docs/router_report.md).",
    )
    routing: Literal["head", "pilots"] = Field(
        "head",
        description="How a query's expert is chosen. 'pilots': the paper's similarity to each expert's pilot "
        "embeddings (see pilot_weighting). 'head': a routing head (logistic regression over an early base "
        "layer, fitted on the same held-out pilot queries by `openscholar router pilots`) names the query's "
        "domain; it told SciFact claims from titles and questions where pilots could not "
        "(docs/router_report.md). Without a fitted head, routing falls back to pilots with a warning.",
    )
    head_layer: int = Field(2, ge=0, description="Base layer whose mean-pooled states the routing head reads (0: embeddings).")
    pilot_weighting: Literal["count", "uniform", "nearest", "knn"] = Field(
        "count",
        description="How an expert's pilot similarities are averaged at query time: 'uniform' is the "
        "paper's plain mean over its pilots; 'count' weights each pilot by the pilot queries it stands "
        "for, so a one-query pilot does not outvote a 176-query one; 'nearest' takes the expert's closest "
        "pilot; 'knn' lets the query's pilot_knn nearest pilot QUERIES vote for the experts that served "
        "them best (the finest pilots; see docs/router_report.md).",
    )
    pilot_knn: int = Field(8, ge=1, description="Pilot queries that vote under pilot_weighting='knn'.")
    pilot_k: int = Field(10, ge=1, description="Cutoff of the per-query nDCG that decides each pilot query's best expert.")
    training: ExpertTrainingConfig = Field(default_factory=ExpertTrainingConfig)


def resolve_experts_dir(config: RouterConfig, cache_dir: Path) -> Path:
    """The experts directory a RouterConfig names (see ``experts_dir``)."""
    if config.experts_dir is not None:
        return Path(config.experts_dir).expanduser()
    if (PACKAGED_EXPERTS / "pilots.json").is_file() or any(PACKAGED_EXPERTS.glob("*/manifest.json")):
        return PACKAGED_EXPERTS
    return Path(cache_dir).expanduser() / "experts"
