"""Training the 3-way support judge (supports / contradicts / neither) with the shared LoRA loop.

The model: the packaged all-MiniLM-L6-v2 as a sequence classifier with a fresh 3-way head, LoRA
adapters on its top ``trainable_layers`` layers (the frozen bottom needs no backward pass: cheaper
on a shared CPU). Data: `openscholar.judges.support_data` (SciFact train claims that never touch
the ScholarQABench 208, ScholarQA-Multi dev attributions, synthetic hard negatives), split by
claim cluster / question; the ``dev`` groups are held apart and only evaluated. The optimizer loop
is `retriever.training.TrainingLoop`; the artifact (adapter + head, a few MB) is written atomically
with a manifest: base model, labels, data counts and overlap report, input hashes, the loop's
record and the held-apart figures. ``openscholar train judge`` runs it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from datastore.strict import StrictModel
from openscholar.judges.support_data import (
    MULTI_FILE,
    SCIFACT_TEST_FILE,
    JudgePair,
    build_judge_pairs,
)
from openscholar.judges.trained import BASE_MODEL, LABELS, MANIFEST
from retriever.training import (
    LoopRecipe,
    ParamGroup,
    Precision,
    TrainingLoop,
    atomic_dir,
    save_adapter,
    sha256_file,
)


class SupportJudgeTrainConfig(StrictModel):
    """What `openscholar train judge` trains on and how (defaults: ~30 minutes on a shared 2-core CPU)."""

    base_model: str = Field(BASE_MODEL, description="Encoder the adapter is trained over (the packaged MiniLM).")
    max_tokens: int = Field(128, ge=32, description="Tokens of statement + evidence window per pair.")
    window_sentences: int = Field(2, ge=1, description="Sentences per evidence window (SciFact rationales).")
    trainable_layers: int = Field(4, ge=1, le=6, description="Top encoder layers that carry LoRA adapters.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
    epochs: float = Field(2.0, gt=0, description="Passes over the training pairs.")
    batch_size: int = Field(16, ge=1, description="Pairs per optimizer step.")
    lr: float = Field(5e-4, gt=0, description="Learning rate of the LoRA weights.")
    head_lr: float = Field(2e-3, gt=0, description="Learning rate of the 3-way head.")
    class_weights: bool = Field(True, description="Weight the loss by inverse label frequency.")
    dev_fraction: float = Field(0.2, gt=0, lt=1, description="SciFact claim clusters held apart.")
    multi_dev_fraction: float = Field(0.5, gt=0, lt=1, description="ScholarQA-Multi questions held apart.")
    seed: int = Field(13, description="Seed of the data order, LoRA init and dropout.")
    threads: int = Field(1, ge=0, description="torch CPU threads (1 on a shared machine: more threads spin).")
    precision: Precision = Field("auto", description="bf16 autocast where the CPU has native bf16.")
    max_seconds: float | None = Field(2400.0, gt=0, description="Wall-clock cap of the optimizer loop.")
    limit: int | None = Field(None, ge=1, description="Train on at most this many pairs (smoke runs).")
    window_inputs: bool = Field(False, description="Train on each evidence text's window closest to the statement "
                                "by content words (what the judge reads in use) instead of its first max_tokens.")
    balanced_batches: bool = Field(False, description="Every batch holds the three labels in equal shares "
                                   "(sampled with replacement per label) instead of a shuffled pass.")

    def loop_recipe(self) -> LoopRecipe:
        return LoopRecipe(seed=self.seed, threads=self.threads, precision=self.precision, warmup_fraction=0.06,
                          weight_decay=0.01, max_grad_norm=1.0, max_seconds=self.max_seconds)


def build_model(config: SupportJudgeTrainConfig) -> Any:
    """The base encoder as a 3-way classifier with LoRA on its top layers (a peft model)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from retriever.st_embedder import resolve_model_path

    base = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(config.base_model), num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)})
    layers = base.config.num_hidden_layers
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.05, task_type="SEQ_CLS",
                      target_modules=["query", "key", "value", "dense"],
                      layers_to_transform=list(range(layers - config.trainable_layers, layers)))
    return get_peft_model(base, lora)


def _batches(pairs: list[JudgePair], config: SupportJudgeTrainConfig) -> Iterator[list[JudgePair]]:
    rng = random.Random(config.seed)
    if config.balanced_batches:
        by_label = [[p for p in pairs if p.label == name] for name in LABELS]
        by_label = [ps for ps in by_label if ps]
        while True:
            batch = [rng.choice(by_label[i % len(by_label)]) for i in range(config.batch_size)]
            rng.shuffle(batch)
            yield batch
    while True:
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for i in range(0, len(order) - config.batch_size + 1, config.batch_size):
            yield [pairs[j] for j in order[i:i + config.batch_size]]


def train_support_judge(scifact: Path, scholarqabench: Path, out: Path, config: SupportJudgeTrainConfig | None = None,
                        *, progress: bool = True) -> dict[str, Any]:
    """Train, evaluate on the held-apart pairs, write the artifact to ``out``; returns the manifest."""
    import torch

    config = config or SupportJudgeTrainConfig()
    loop: TrainingLoop[list[JudgePair]] = TrainingLoop(config.loop_recipe(), name="support judge", progress=progress)
    data = build_judge_pairs(scifact, scholarqabench, dev_fraction=config.dev_fraction,
                             multi_dev_fraction=config.multi_dev_fraction, window=config.window_sentences)
    train: list[JudgePair] = data["train"]
    if config.limit is not None:
        train = random.Random(config.seed).sample(train, min(config.limit, len(train)))
    if config.window_inputs:
        train = [closest_window(p, config.window_sentences) for p in train]
    model = build_model(config)
    from transformers import AutoTokenizer

    from retriever.st_embedder import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.base_model))
    counts = [sum(p.label == name for p in train) for name in LABELS]
    weights = torch.tensor([len(train) / (len(LABELS) * max(1, c)) for c in counts]) if config.class_weights else None

    def loss_fn(batch: list[JudgePair]) -> Any:
        enc = tokenizer([p.statement for p in batch], [p.evidence for p in batch], truncation="longest_first",
                        max_length=config.max_tokens, padding=True, return_tensors="pt")
        with loop.autocast():
            logits = model(**enc).logits
        target = torch.tensor([LABELS.index(p.label) for p in batch])
        return torch.nn.functional.cross_entropy(logits.float(), target, weight=weights)

    head = [p for n, p in model.named_parameters() if p.requires_grad and "classifier" in n]
    lora = [p for n, p in model.named_parameters() if p.requires_grad and "classifier" not in n]
    planned = int(config.epochs * (len(train) // config.batch_size))
    record = loop.run(model, [ParamGroup(lora, config.lr), ParamGroup(head, config.head_lr)],
                      _batches(train, config), loss_fn, planned)
    heldout = evaluate_pairs(model, tokenizer, data["dev"], config.max_tokens)
    report = data["report"]
    manifest = {
        "kind": "support-judge-3way",
        "format_version": 2,
        "base_model": config.base_model,
        "labels": list(LABELS),
        "max_tokens": config.max_tokens,
        "window_sentences": config.window_sentences,
        "input": "statement [SEP] evidence window; softmax over supports/contradicts/neither; a passage is read "
                 "window by window (best window per relation)",
        "config": config.model_dump(),
        "data": {
            "sources": "SciFact train-qrels claims (rationale labels), ScholarQA-Multi dev expert attributions, "
                       "synthetic hard negatives (negated, reversed, changed numbers -> contradicts; swapped entity "
                       "-> neither)",
            "counts": report["counts"],
            "scifact_overlap_with_scholarqabench_208": {k: v for k, v in report["scifact"].items()
                                                        if k != "used_claim_ids"},
            "scifact_claim_ids": report["scifact"]["used_claim_ids"],
            "inputs": {str(p): sha256_file(p) for p in (scifact / "queries.jsonl", scifact / "qrels" / "train.tsv",
                                                        scholarqabench / MULTI_FILE,
                                                        scholarqabench / SCIFACT_TEST_FILE)},
        },
        "training": record.model_dump(),
        "heldout": heldout,
    }
    with atomic_dir(out) as tmp:
        save_adapter(model, tmp, base_model=config.base_model)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return calibrate_threshold(out, data["dev"])


def calibrate_threshold(out: Path, dev: list[JudgePair]) -> dict[str, Any]:
    """Choose the judge's support threshold on the held-apart pairs, read as the product reads them
    (window by window, `TrainedJudge`): the score that best separates supports from the rest
    (balanced accuracy). Written into the manifest's ``heldout``; never chosen on test data."""
    from openscholar.judges.trained import TrainedJudge

    judge = TrainedJudge(out, windows_per_passage=None)
    scores = judge.score([(p.statement, p.evidence) for p in dev])
    positive = [p.label == "supports" for p in dev]
    best, best_acc = 0.5, -1.0
    for t in [i / 100 for i in range(5, 96)]:
        tpr = sum(s >= t and y for s, y in zip(scores, positive, strict=True)) / max(1, sum(positive))
        tnr = sum(s < t and not y for s, y in zip(scores, positive, strict=True)) / max(1, len(dev) - sum(positive))
        if (tpr + tnr) / 2 > best_acc:
            best, best_acc = t, (tpr + tnr) / 2
    manifest_file = out / MANIFEST
    manifest: dict[str, Any] = json.loads(manifest_file.read_text(encoding="utf-8"))
    manifest["heldout"].update(support_threshold=best, support_balanced_accuracy_at_threshold=round(best_acc, 4),
                               threshold_chosen_on="the held-apart pairs above (dev), windowed as in the product")
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def closest_window(pair: JudgePair, window_sentences: int) -> JudgePair:
    """The pair with its evidence cut to the window the judge would read first (most content words
    shared with the statement; `NLIJudge.windows_of` with one window)."""
    from dataclasses import replace

    from openscholar.judges.nli import NLIJudge

    reader = NLIJudge("unused", window_sentences=window_sentences, windows_per_passage=1)
    return replace(pair, evidence=reader.windows_of(pair.statement, "\n" + pair.evidence)[0])


def evaluate_pairs(model: Any, tokenizer: Any, pairs: list[JudgePair], max_tokens: int) -> dict[str, Any]:
    """Pair-level figures on held-apart pairs: 3-way accuracy, support accuracy, and per source."""
    import torch

    probs: list[list[float]] = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(pairs), 64):
            batch = pairs[i:i + 64]
            enc = tokenizer([p.statement for p in batch], [p.evidence for p in batch], truncation="longest_first",
                            max_length=max_tokens, padding=True, return_tensors="pt")
            probs += torch.softmax(model(**enc).logits.float(), -1).tolist()
    predicted = [LABELS[max(range(len(LABELS)), key=lambda k: row[k])] for row in probs]
    by_source: dict[str, list[int]] = {}
    for p, guess in zip(pairs, predicted, strict=True):
        by_source.setdefault(p.source, []).append(int(guess == p.label))
    support_ok = [int((guess == "supports") == (p.label == "supports")) for p, guess in zip(pairs, predicted, strict=True)]
    majority = max(sum(p.label == name for p in pairs) for name in LABELS) / len(pairs)
    return {
        "pairs": len(pairs),
        "groups": len({p.group for p in pairs}),
        "accuracy_3way": round(sum(g == p.label for p, g in zip(pairs, predicted, strict=True)) / len(pairs), 4),
        "majority_3way": round(majority, 4),
        "support_accuracy": round(sum(support_ok) / len(pairs), 4),
        "accuracy_by_source": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_source.items())},
    }


Split = Literal["train", "dev"]
