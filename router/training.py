"""Training one expert: a query-side LoRA on the frozen base, contrastive against frozen passages.

Loss (InfoNCE): for a query q with positive p, softmax over p, the other in-batch positives and (by
default) every frozen corpus vector, at temperature tau. Passage vectors never change, so the expert
keeps searching the datastore the base built.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from retriever.st_embedder import cpu_has_native_bf16
from router.backbone import LORA_TARGETS, Backbone
from router.config import ExpertTrainingConfig, RouterConfig
from router.experts import (
    ADAPTER,
    PILOT_SET,
    Expert,
    ExpertManifest,
    ExpertStore,
    Pair,
    TrainingRecord,
    file_hash,
    pairs_hash,
    write_pairs,
)
from router.pool import CandidatePool, PairSet, embed_positives, ndcg_at_k

log = logging.getLogger(__name__)


def sample_pilot_set(pairs: Sequence[Pair], n_queries: int, seed: int) -> list[Pair]:
    """A seeded sample of ``n_queries`` distinct training queries with all their positives."""
    ps = PairSet.from_pairs(pairs)
    idx = list(range(len(ps.queries)))
    random.Random(seed).shuffle(idx)
    keep = sorted(idx[:n_queries])
    return [Pair(ps.queries[q], ps.positives[p]) for q in keep for p in ps.gold[q]]


class CorpusNegatives:
    """Frozen datastore vectors and a text -> row lookup (so stored passages are never re-embedded)."""

    def __init__(self, vectors: np.ndarray, texts: Sequence[str] | None = None, source: str = "") -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.lookup = {t: i for i, t in enumerate(texts)} if texts is not None else {}
        self.source = source

    @classmethod
    def from_datastore(cls, datastore) -> CorpusNegatives:
        texts, ids = [], []
        for p in datastore.iter_passages():
            texts.append(p.embed_text)
            ids.append(p.passage_id)
        return cls(datastore.vectors(ids), texts, source=f"datastore:{datastore.manifest.build_id}")


def train_expert(
    backbone: Backbone,
    store: ExpertStore,
    name: str,
    domain: str,
    pairs: Sequence[Pair],
    *,
    router_config: RouterConfig | None = None,
    negatives: CorpusNegatives | None = None,
    data_source: str = "",
    progress: bool = True,
) -> Expert:
    """Train expert ``name`` on ``pairs`` and write it (adapter, pilot set, manifest) into ``store``."""
    import torch

    rc = router_config or RouterConfig()
    cfg: ExpertTrainingConfig = rc.training
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    backbone.load()
    all_pairs = list(pairs)
    n_queries = len(PairSet.from_pairs(all_pairs).queries)
    n_pilot = min(rc.pilot_queries, int(rc.pilot_holdout * n_queries)) if rc.pilot_holdout > 0 else rc.pilot_queries
    pilot_pairs = sample_pilot_set(all_pairs, max(1, n_pilot), cfg.seed)
    if rc.pilot_holdout > 0:  # the pilot queries are never trained on
        held = {p.query for p in pilot_pairs}
        pairs = [p for p in all_pairs if p.query not in held]
    ps = PairSet.from_pairs(pairs)
    corpus = negatives.vectors if negatives is not None else None
    pos_vecs = embed_positives(ps.positives, negatives.lookup if negatives else None, corpus, backbone.encode)
    pool = CandidatePool.build(pos_vecs, corpus if cfg.corpus_negatives else None)

    # Examples: (query index, positive index); each query's golds as pool rows (masked as negatives).
    examples = [(q, p) for q, golds in enumerate(ps.gold) for p in golds]
    gold_rows = [set(int(pool.pos_row[p]) for p in golds) for golds in ps.gold]
    steps_per_epoch = max(1, len(examples) // cfg.batch_size)
    total = max(1, min(cfg.max_steps, int(round(cfg.epochs * steps_per_epoch))))
    warmup = max(1, total // 10)

    model = backbone.lora_model(rc.lora_rank, rc.lora_alpha, seed=cfg.seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    use_bf16 = cfg.bf16 if cfg.bf16 is not None else bool(cpu_has_native_bf16())
    pool_t = torch.from_numpy(pool.vectors)
    pos_rows_t = torch.from_numpy(pool.pos_row)

    order: list[tuple[int, int]] = []
    losses: list[float] = []
    start = time.monotonic()
    cpu_start = time.process_time()
    step = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"train {name}", unit="step")
    while step < total:
        if len(order) < cfg.batch_size:
            fresh = examples[:]
            rng.shuffle(fresh)
            order += fresh
        batch, rest, seen = [], [], set()
        for ex in order:  # distinct queries per batch: a query never competes with its own gold
            if len(batch) < cfg.batch_size and ex[0] not in seen:
                batch.append(ex)
                seen.add(ex[0])
            else:
                rest.append(ex)
        order = rest
        qs = [ps.queries[q] for q, _ in batch]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            q = backbone.forward(model, backbone.tokenize(qs)).float()
        # Candidates: this batch's positives (in-batch negatives for the others) + the pool.
        in_batch = pos_rows_t[[p for _, p in batch]]
        cand = torch.cat([pool_t[in_batch], pool_t]) if cfg.corpus_negatives else pool_t[in_batch]
        logits = q @ cand.T / cfg.temperature
        mask = torch.zeros_like(logits, dtype=torch.bool)
        for i, (qi, _) in enumerate(batch):
            golds = gold_rows[qi]
            for j in range(len(batch)):
                if j != i and int(in_batch[j]) in golds:
                    mask[i, j] = True
            if cfg.corpus_negatives:
                for g in golds:  # the gold itself (and the query's other golds) in the pool
                    mask[i, len(batch) + g] = True
        logits = logits.masked_fill(mask, float("-inf"))
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if step % 25 == 0:
            log.info("expert %s: step %d/%d loss %.4f (%.0fs)", name, step, total, np.mean(losses[-25:]), time.monotonic() - start)
        if time.monotonic() - start > cfg.max_seconds:
            log.warning("expert %s: stopped at step %d of %d (max_seconds %.0f)", name, step, total, cfg.max_seconds)
            break
    if bar is not None:
        bar.close()
    seconds = time.monotonic() - start
    cpu_seconds = time.process_time() - cpu_start
    model.eval()

    # Write: adapter, pilot set, then the manifest last (its presence marks a complete expert).
    out = store.root / name
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out / ADAPTER))
    (out / ADAPTER / "README.md").unlink(missing_ok=True)  # peft's empty model card
    write_pairs(out / PILOT_SET, pilot_pairs)

    # Metrics: nDCG@10 of base vs expert on the pilot queries, against the same frozen pool
    # (held-out positives are embedded, or looked up among the stored vectors, like the others).
    pilot = PairSet.from_pairs(pilot_pairs)
    p_index = {t: i for i, t in enumerate(ps.positives)}
    missing = [t for t in pilot.positives if t not in p_index]
    if missing:
        extra = embed_positives(missing, negatives.lookup if negatives else None, corpus, backbone.encode)
        pool = CandidatePool.build(np.concatenate([pos_vecs, extra]), corpus if cfg.corpus_negatives else None)
        p_index.update({t: len(ps.positives) + i for i, t in enumerate(missing)})
    pilot_gold = [[int(pool.pos_row[p_index[pilot.positives[p]]]) for p in g] for g in pilot.gold]
    base_nd = ndcg_at_k(backbone.encode(pilot.queries), pilot_gold, pool.vectors, rc.pilot_k)
    exp_nd = ndcg_at_k(backbone.encode_with(model, pilot.queries), pilot_gold, pool.vectors, rc.pilot_k)

    manifest = ExpertManifest(
        name=name,
        domain=domain,
        base_model=backbone.model_name,
        dim=backbone.dim,
        lora_rank=rc.lora_rank,
        lora_alpha=rc.lora_alpha,
        lora_targets=list(LORA_TARGETS),
        training=TrainingRecord(
            data_hash=pairs_hash(pairs),
            data_source=data_source,
            pairs=len(pairs),
            queries=len(ps.queries),
            steps=step,
            epochs=round(step * cfg.batch_size / max(1, len(examples)), 3),
            batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            temperature=cfg.temperature,
            corpus_negatives=pool.corpus_size if cfg.corpus_negatives else 0,
            negatives_source=negatives.source if negatives is not None and cfg.corpus_negatives else "",
            seed=cfg.seed,
            train_seconds=round(seconds, 2),
            train_cpu_seconds=round(cpu_seconds, 2),
            final_loss=float(np.mean(losses[-20:])) if losses else float("nan"),
            pilot_held_out=rc.pilot_holdout > 0,
        ),
        pilot_set_hash=file_hash(out / PILOT_SET),
        pilot_queries=len(pilot.queries),
        metrics={
            "pilot_ndcg10_base": float(base_nd.mean()),
            "pilot_ndcg10_expert": float(exp_nd.mean()),
        },
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    store.save_manifest(name, manifest)
    log.info("expert %s: %s", name, json.dumps(manifest.metrics))
    return store.get(name)


def train_from_file(
    backbone: Backbone, store: ExpertStore, name: str, domain: str, pairs_file: Path, **kw
) -> Expert:
    from router.experts import read_pairs

    return train_expert(backbone, store, name, domain, read_pairs(pairs_file), data_source=Path(pairs_file).name, **kw)
