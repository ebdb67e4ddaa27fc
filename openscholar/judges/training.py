"""Training the support judge on SciFact rationale labels (TRAIN-split claims only).

Pairs are (claim, evidence window of two sentences); see ``build_pairs``. Only the claims of
SciFact's train qrels are read. Claims are split by id: ``holdout`` of them are held apart and only
used to report accuracy.

To fit a few CPU minutes, only the encoder's last layer is adapted (LoRA) with the head: the
lower layers' output is computed once per pair and cached, then the last layer is trained on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openscholar.judges.cross_encoder import BASE_MODEL, MANIFEST, build_support_model
from openscholar.judges.lexical import content_words
from openscholar.judges.windows import overlap, split_sentences

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    claim_id: str
    claim: str
    passage: str
    label: int
    kind: str  # support | contradict | nei | bm25


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _in_holdout(claim_id: str, holdout: float) -> bool:
    digest = hashlib.sha256(f"judge-split:{claim_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < holdout


def build_pairs(scifact: Path, hard_negatives: int = 1, seed: int = 0, window: int = 2) -> list[Pair]:
    """Labelled (claim, evidence window) pairs from the SciFact TRAIN qrels' claims only.

    A window holding a SUPPORT rationale sentence is positive; negatives are the window holding
    a CONTRADICT rationale, the closest non-rationale window of a supporting abstract, the
    closest window of an abstract cited without evidence (NEI), and of a BM25 hard negative.
    """
    import bm25s

    rng = random.Random(seed)
    corpus = {d["_id"]: d for d in _read_jsonl(scifact / "corpus.jsonl")}
    cited: dict[str, set[str]] = {}
    for ln in (scifact / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        if ln.strip():
            qid, did, _ = ln.split("\t")
            cited.setdefault(qid, set()).add(did)
    claims = [q for q in _read_jsonl(scifact / "queries.jsonl") if q["_id"] in cited]

    doc_ids = list(corpus)
    texts = [f"{corpus[d].get('title', '')} {corpus[d]['text']}" for d in doc_ids]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    found, _ = retriever.retrieve(bm25s.tokenize([q["text"] for q in claims], stopwords="en", show_progress=False),
                                  k=hard_negatives + 6, show_progress=False)

    def spans(doc_id: str) -> list[tuple[set[int], str]]:
        sents = split_sentences(corpus[doc_id]["text"])
        if len(sents) <= window:
            return [(set(range(len(sents))), " ".join(sents))] if sents else []
        return [(set(range(i, i + window)), " ".join(sents[i:i + window])) for i in range(len(sents) - window + 1)]

    def closest(claim: str, doc_id: str, avoid: set[int] = frozenset()) -> str | None:  # type: ignore[assignment]
        words = content_words(claim)
        cands = [(overlap(words, t), -min(ix), t) for ix, t in spans(doc_id) if not (ix & avoid)]
        return max(cands)[2] if cands else None

    pairs: list[Pair] = []
    for row, q in enumerate(claims):
        qid, text, meta = q["_id"], q["text"], q.get("metadata") or {}
        labelled = set()
        for doc_id, evidence in meta.items():
            if doc_id not in corpus:
                continue
            labelled.add(doc_id)
            rationale = {i for e in evidence for i in e["sentences"]}
            support = {i for e in evidence if e["label"] == "SUPPORT" for i in e["sentences"]}
            hits = [(ix, t) for ix, t in spans(doc_id) if ix & rationale]
            if support:
                pos = [t for ix, t in hits if ix & support]
                pairs.extend(Pair(qid, text, t, 1, "support") for t in rng.sample(pos, min(2, len(pos))))
                neg = closest(text, doc_id, avoid=rationale)
                if neg:
                    pairs.append(Pair(qid, text, neg, 0, "same_doc"))
            else:
                con = [t for _, t in hits]
                if con:
                    pairs.append(Pair(qid, text, rng.choice(con), 0, "contradict"))
        for doc_id in sorted(cited.get(qid, set()) - labelled):
            if doc_id in corpus and (t := closest(text, doc_id)):
                pairs.append(Pair(qid, text, t, 0, "nei"))
        known = cited.get(qid, set()) | set(meta)
        negatives = [doc_ids[i] for i in found[row].tolist() if doc_ids[i] not in known][:hard_negatives]
        for d in negatives:
            if (t := closest(text, d)) and rng.random() < 0.6:
                pairs.append(Pair(qid, text, t, 0, "bm25"))
    rng.shuffle(pairs)
    return pairs


def split_pairs(pairs: list[Pair], holdout: float) -> tuple[list[Pair], list[Pair]]:
    train = [p for p in pairs if not _in_holdout(p.claim_id, holdout)]
    held = [p for p in pairs if _in_holdout(p.claim_id, holdout)]
    return train, held


def evaluate(score: Callable[[list[tuple[str, str]]], list[float]], pairs: list[Pair], threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, balanced accuracy, support precision/recall and per-kind accuracy at ``threshold``."""
    scores = score([(p.claim, p.passage) for p in pairs])
    pred = [s >= threshold for s in scores]
    gold = [p.label == 1 for p in pairs]
    tp = sum(a and b for a, b in zip(pred, gold, strict=True))
    fp = sum(a and not b for a, b in zip(pred, gold, strict=True))
    fn = sum(b and not a for a, b in zip(pred, gold, strict=True))
    tn = len(pairs) - tp - fp - fn
    pos, neg = tp + fn, tn + fp
    by_kind: dict[str, list[bool]] = {}
    for p, a, b in zip(pairs, pred, gold, strict=True):
        by_kind.setdefault(p.kind, []).append(a == b)
    return {
        "pairs": len(pairs),
        "claims": len({p.claim_id for p in pairs}),
        "threshold": threshold,
        "accuracy": round((tp + tn) / max(1, len(pairs)), 4),
        "balanced_accuracy": round(0.5 * (tp / max(1, pos) + tn / max(1, neg)), 4),
        "support_precision": round(tp / max(1, tp + fp), 4),
        "support_recall": round(tp / max(1, pos), 4),
        "majority_baseline": round(max(pos, neg) / max(1, len(pairs)), 4),
        "accuracy_by_kind": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_kind.items())},
        "scores": scores,
    }


def train_judge(
    scifact: Path,
    out: Path,
    *,
    base_model: str = BASE_MODEL,
    epochs: int = 3,
    batch_size: int = 16,
    max_tokens: int = 128,
    lr: float = 1e-3,
    lora_r: int = 16,
    holdout: float = 0.15,
    hard_negatives: int = 1,
    seed: int = 0,
    threads: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, evaluate on the held-apart claims, and write adapter + head + manifest to ``out``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file
    from tqdm import tqdm
    from transformers import AutoTokenizer
    from transformers.masking_utils import create_bidirectional_mask

    from retriever.st_embedder import resolve_model_path

    t0 = time.time()
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    pairs = build_pairs(scifact, hard_negatives=hard_negatives, seed=seed)
    train, held = split_pairs(pairs, holdout)
    if limit:
        train = train[:limit]
    base_path = resolve_model_path(base_model)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = build_support_model(base_path)
    last = model.encoder.config.num_hidden_layers - 1
    lora = LoraConfig(
        r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.1,
        target_modules=rf".*encoder\.layer\.{last}\.(attention\.self\.(query|key|value)|attention\.output\.dense"
        r"|intermediate\.dense|output\.dense)",
    )
    model.encoder = get_peft_model(model.encoder, lora)
    bert = model.encoder.base_model.model

    def encode(batch: list[tuple[str, str]]) -> Any:
        return tokenizer([a for a, _ in batch], [b for _, b in batch], truncation="only_second",
                         max_length=max_tokens, padding=True, return_tensors="pt")

    # Batches of similar length (less padding); the frozen lower layers run once per batch.
    order = sorted(train, key=lambda p: len(p.claim) + len(p.passage))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    cache: list[tuple[Any, Any, Any]] = []
    model.eval()
    with torch.no_grad():
        for batch in tqdm(batches, desc="judge: encode", disable=not progress):
            enc = encode([(p.claim, p.passage) for p in batch])
            hidden = bert(**enc, output_hidden_states=True).hidden_states[last]
            labels = torch.tensor([float(p.label) for p in batch])
            cache.append((hidden.to(torch.float16), enc["attention_mask"], labels))

    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * len(cache)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=lr, total_steps=max(1, steps), pct_start=0.1)
    pos = sum(p.label for p in train)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(train) - pos) / max(1, pos)))
    layer = bert.encoder.layer[last]
    model.train()
    rng = random.Random(seed)
    bar = tqdm(total=steps, desc="judge: train last layer", disable=not progress)
    for _ in range(epochs):
        for idx in rng.sample(range(len(cache)), len(cache)):
            hidden, mask, labels = cache[idx]
            hidden = hidden.to(torch.float32)
            mask4d = create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=mask)
            top = layer(hidden, mask4d)
            top = top[0] if isinstance(top, tuple) else top
            m = mask.unsqueeze(-1).to(top.dtype)
            logits = model.head((top * m).sum(1) / m.sum(1).clamp(min=1.0)).squeeze(-1)
            loss = loss_fn(logits, labels)
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()

    def score(batch_pairs: list[tuple[str, str]]) -> list[float]:
        outs: list[float] = []
        with torch.inference_mode():
            for s in range(0, len(batch_pairs), 32):
                outs.extend(torch.sigmoid(model(**encode(batch_pairs[s:s + 32]))).tolist())
        return outs

    metrics = evaluate(score, held)
    metrics.pop("scores")
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    model.encoder.peft_config["default"].base_model_name_or_path = base_model
    model.encoder.save_pretrained(str(tmp / "adapter"))
    save_file({k: v.detach().contiguous() for k, v in model.head.state_dict().items()}, str(tmp / "head.safetensors"))
    manifest = {
        "kind": "support-judge",
        "format_version": 1,
        "base_model": base_model,
        "max_tokens": max_tokens,
        "window_sentences": 2,
        "input": "statement [SEP] evidence window (2 sentences); output sigmoid = P(window supports statement); "
        "a passage's score is the max over its windows",
        "training": {
            "data": "SciFact rationale labels (BEIR scifact queries.jsonl metadata), train-qrels claims only",
            "pairs": len(train), "positives": pos, "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "lora_r": lora_r, "adapted_layers": [last], "hard_negatives": hard_negatives,
            "holdout_fraction": holdout, "seed": seed, "seconds": round(time.time() - t0, 1),
        },
        "heldout": metrics,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return manifest
