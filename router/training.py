"""Training one expert: a query-side LoRA on the frozen base, contrastive against frozen passages.

Loss (InfoNCE): for a query q with positive p, softmax over p, the other in-batch positives and (by
default) every frozen corpus vector, at temperature tau. Passage vectors never change, so the expert
keeps searching the datastore the base built.

`train_expert` runs named steps, each a function here: hold the pilot queries out
(`split_pilot_set`), embed the positives and build the candidate pool (`prepare_data`), build the
LoRA model, train it with the shared `retriever.training.TrainingLoop` on `expert_batches` and
`contrastive_loss`, score base vs expert on the pilot queries (`evaluate_on_pilots`), and write the
expert atomically with its typed manifest (`save_expert`).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from retriever.training import LoopRecord, ParamGroup, TrainingLoop, atomic_dir, save_adapter
from router.backbone import LORA_TARGETS, Backbone
from router.config import ExpertTrainingConfig, RouterConfig
from router.experts import (
    ADAPTER,
    MANIFEST,
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

Example = tuple[int, int]  # (query index, positive index) into an ExpertData's PairSet


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
    def from_datastore(cls, datastore: Any) -> CorpusNegatives:
        texts, ids = [], []
        for p in datastore.iter_passages():
            texts.append(p.embed_text)
            ids.append(p.passage_id)
        return cls(datastore.vectors(ids), texts, source=f"datastore:{datastore.manifest.build_id}")


# -- step 1: data -------------------------------------------------------------------------------
def split_pilot_set(pairs: Sequence[Pair], rc: RouterConfig) -> tuple[list[Pair], list[Pair]]:
    """(pilot pairs, training pairs): a seeded sample of queries for the pilots, held out of training
    when ``rc.pilot_holdout`` > 0 (then at most that fraction of the queries), else shared."""
    all_pairs = list(pairs)
    n_queries = len(PairSet.from_pairs(all_pairs).queries)
    n_pilot = min(rc.pilot_queries, int(rc.pilot_holdout * n_queries)) if rc.pilot_holdout > 0 else rc.pilot_queries
    pilot_pairs = sample_pilot_set(all_pairs, max(1, n_pilot), rc.training.seed)
    if rc.pilot_holdout <= 0:
        return pilot_pairs, all_pairs
    held = {p.query for p in pilot_pairs}
    return pilot_pairs, [p for p in all_pairs if p.query not in held]


@dataclass
class ExpertData:
    """What one expert trains on: its pairs, the frozen candidate pool and the training examples."""

    pilot_pairs: list[Pair]
    train_pairs: list[Pair]
    pairs: PairSet
    pos_vecs: np.ndarray
    pool: CandidatePool
    examples: list[Example]
    gold_rows: list[set[int]]  # each query's golds as pool rows (masked as negatives)


def prepare_data(
    backbone: Backbone, pairs: Sequence[Pair], rc: RouterConfig, negatives: CorpusNegatives | None
) -> ExpertData:
    """Split off the pilots, embed the positives (stored ones are looked up), build the pool."""
    cfg = rc.training
    pilot_pairs, train_pairs = split_pilot_set(pairs, rc)
    ps = PairSet.from_pairs(train_pairs)
    corpus = negatives.vectors if negatives is not None else None
    pos_vecs = embed_positives(ps.positives, negatives.lookup if negatives else None, corpus, backbone.encode)
    pool = CandidatePool.build(pos_vecs, corpus if cfg.corpus_negatives else None)
    examples = [(q, p) for q, golds in enumerate(ps.gold) for p in golds]
    gold_rows = [{int(pool.pos_row[p]) for p in golds} for golds in ps.gold]
    return ExpertData(pilot_pairs, train_pairs, ps, pos_vecs, pool, examples, gold_rows)


def planned_steps(data: ExpertData, cfg: ExpertTrainingConfig) -> int:
    """Optimizer steps of ``cfg.epochs`` passes over the examples (the loop caps them at max_steps)."""
    steps_per_epoch = max(1, len(data.examples) // cfg.batch_size)
    return round(cfg.epochs * steps_per_epoch)


def expert_batches(examples: Sequence[Example], batch_size: int, seed: int) -> Iterator[list[Example]]:
    """Endless batches of examples in a seeded order, with distinct queries per batch (a query never
    competes with its own gold); an example that would repeat a query waits for the next batch."""
    rng = random.Random(seed)
    order: list[Example] = []
    while True:
        if len(order) < batch_size:
            fresh = list(examples)
            rng.shuffle(fresh)
            order += fresh
        batch: list[Example] = []
        rest: list[Example] = []
        seen: set[int] = set()
        for ex in order:
            if len(batch) < batch_size and ex[0] not in seen:
                batch.append(ex)
                seen.add(ex[0])
            else:
                rest.append(ex)
        order = rest
        yield batch


# -- step 2: model and loss -----------------------------------------------------------------------
def contrastive_loss(
    backbone: Backbone, model: Any, data: ExpertData, cfg: ExpertTrainingConfig, loop: TrainingLoop[list[Example]]
) -> Callable[[list[Example]], Any]:
    """The InfoNCE loss of a batch: each query against this batch's positives (in-batch negatives for
    the others) and, with ``corpus_negatives``, the whole frozen pool; the query's other golds are
    masked, never counted as negatives."""
    import torch

    pool_t = torch.from_numpy(data.pool.vectors)
    pos_rows_t = torch.from_numpy(data.pool.pos_row)

    def loss_fn(batch: list[Example]) -> Any:
        qs = [data.pairs.queries[q] for q, _ in batch]
        with loop.autocast():
            q = backbone.forward(model, backbone.tokenize(qs)).float()
        in_batch = pos_rows_t[[p for _, p in batch]]
        cand = torch.cat([pool_t[in_batch], pool_t]) if cfg.corpus_negatives else pool_t[in_batch]
        logits = q @ cand.T / cfg.temperature
        mask = torch.zeros_like(logits, dtype=torch.bool)
        for i, (qi, _) in enumerate(batch):
            golds = data.gold_rows[qi]
            for j in range(len(batch)):
                if j != i and int(in_batch[j]) in golds:
                    mask[i, j] = True
            if cfg.corpus_negatives:
                for g in golds:  # the gold itself (and the query's other golds) in the pool
                    mask[i, len(batch) + g] = True
        logits = logits.masked_fill(mask, float("-inf"))
        return torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))

    return loss_fn


# -- step 3: evaluation ---------------------------------------------------------------------------
def evaluate_on_pilots(
    backbone: Backbone, model: Any, data: ExpertData, rc: RouterConfig, negatives: CorpusNegatives | None
) -> dict[str, float]:
    """nDCG@pilot_k of base vs expert on the pilot queries, against the same frozen pool (held-out
    positives are embedded, or looked up among the stored vectors, like the others)."""
    cfg = rc.training
    corpus = negatives.vectors if negatives is not None else None
    pilot = PairSet.from_pairs(data.pilot_pairs)
    p_index = {t: i for i, t in enumerate(data.pairs.positives)}
    pool = data.pool
    missing = [t for t in pilot.positives if t not in p_index]
    if missing:
        extra = embed_positives(missing, negatives.lookup if negatives else None, corpus, backbone.encode)
        pool = CandidatePool.build(np.concatenate([data.pos_vecs, extra]), corpus if cfg.corpus_negatives else None)
        p_index.update({t: len(data.pairs.positives) + i for i, t in enumerate(missing)})
    pilot_gold = [[int(pool.pos_row[p_index[pilot.positives[p]]]) for p in g] for g in pilot.gold]
    base_nd = ndcg_at_k(backbone.encode(pilot.queries), pilot_gold, pool.vectors, rc.pilot_k)
    exp_nd = ndcg_at_k(backbone.encode_with(model, pilot.queries), pilot_gold, pool.vectors, rc.pilot_k)
    return {"pilot_ndcg10_base": float(base_nd.mean()), "pilot_ndcg10_expert": float(exp_nd.mean())}


# -- step 4: the record and the atomic save -------------------------------------------------------
def training_record(
    data: ExpertData, rc: RouterConfig, record: LoopRecord, losses: Sequence[float],
    negatives: CorpusNegatives | None, data_source: str,
) -> TrainingRecord:
    """The manifest's training section: data hash and counts, the recipe, and the loop's record."""
    cfg = rc.training
    return TrainingRecord(
        data_hash=pairs_hash(data.train_pairs),
        data_source=data_source,
        pairs=len(data.train_pairs),
        queries=len(data.pairs.queries),
        steps=record.steps,
        epochs=round(record.steps * cfg.batch_size / max(1, len(data.examples)), 3),
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        temperature=cfg.temperature,
        corpus_negatives=data.pool.corpus_size if cfg.corpus_negatives else 0,
        negatives_source=negatives.source if negatives is not None and cfg.corpus_negatives else "",
        seed=cfg.seed,
        train_seconds=record.train_seconds,
        train_cpu_seconds=record.train_cpu_seconds,
        final_loss=float(np.mean(losses[-20:])) if losses else float("nan"),
        pilot_held_out=rc.pilot_holdout > 0,
        loop=record,
    )


def save_expert(
    store: ExpertStore, name: str, model: Any, pilot_pairs: Sequence[Pair],
    manifest_for: Callable[[str], ExpertManifest],
) -> Expert:
    """Write adapter, pilot set and manifest into ``store/name`` all at once (`atomic_dir`): a reader
    sees no expert or a whole one. ``manifest_for(pilot_set_hash)`` builds the manifest."""
    with atomic_dir(store.root / name) as tmp:
        save_adapter(model, tmp / ADAPTER)
        write_pairs(tmp / PILOT_SET, pilot_pairs)
        manifest = manifest_for(file_hash(tmp / PILOT_SET))
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    return store.get(name)


# -- the steps in order -----------------------------------------------------------------------------
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
    rc = router_config or RouterConfig()
    cfg = rc.training
    loop: TrainingLoop[list[Example]] = TrainingLoop(cfg.loop_recipe(), name=f"train {name}", progress=progress)
    backbone.load()
    data = prepare_data(backbone, pairs, rc, negatives)
    model = backbone.lora_model(rc.lora_rank, rc.lora_alpha, seed=cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    record = loop.run(model, [ParamGroup(params, cfg.learning_rate)], expert_batches(data.examples, cfg.batch_size, cfg.seed),
                      contrastive_loss(backbone, model, data, cfg, loop), planned_steps(data, cfg))
    metrics = evaluate_on_pilots(backbone, model, data, rc, negatives)
    training = training_record(data, rc, record, loop.losses, negatives, data_source)

    def manifest_for(pilot_set_hash: str) -> ExpertManifest:
        return ExpertManifest(
            name=name, domain=domain, base_model=backbone.model_name, dim=backbone.dim, lora_rank=rc.lora_rank,
            lora_alpha=rc.lora_alpha, lora_targets=list(LORA_TARGETS), training=training,
            pilot_set_hash=pilot_set_hash, pilot_queries=len(PairSet.from_pairs(data.pilot_pairs).queries),
            metrics=metrics, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    expert = save_expert(store, name, model, data.pilot_pairs, manifest_for)
    log.info("expert %s: %s", name, json.dumps(metrics))
    return expert


def train_from_file(
    backbone: Backbone, store: ExpertStore, name: str, domain: str, pairs_file: Path, **kw: Any
) -> Expert:
    from router.experts import read_pairs

    return train_expert(backbone, store, name, domain, read_pairs(pairs_file), data_source=Path(pairs_file).name, **kw)
