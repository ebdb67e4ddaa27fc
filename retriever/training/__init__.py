"""One training home: the LoRA training loop every model trained here runs through.

The experts (router), the reranker (retriever) and the support judge (openscholar) each build their
model, their batches and their loss; `TrainingLoop` does the rest the same way for all of them:
seeding, torch threads, precision (bf16 autocast where the CPU has it), AdamW with a warmup
schedule, gradient clipping, a progress bar, a wall-clock cap, and a typed record of what happened
(`LoopRecord`) that every artifact manifest carries. `atomic_dir` writes an artifact directory so
that readers never see half of it. It lives in the retriever layer, the lowest one all three
trainers may import.
"""

from retriever.training.loop import LoopRecord, ParamGroup, TrainingLoop
from retriever.training.output import atomic_dir, save_adapter, sha256_file
from retriever.training.recipe import (
    LoopRecipe,
    Precision,
    Schedule,
    resolve_bf16,
    seed_everything,
    set_threads,
)

__all__ = [
    "LoopRecipe",
    "LoopRecord",
    "ParamGroup",
    "Precision",
    "Schedule",
    "TrainingLoop",
    "atomic_dir",
    "resolve_bf16",
    "save_adapter",
    "seed_everything",
    "set_threads",
    "sha256_file",
]
