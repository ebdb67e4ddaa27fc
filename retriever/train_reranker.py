"""Train the default cross-encoder reranker: LoRA over the base MiniLM with a cosine head, on CPU.

Data (all honest, recorded in a manifest with input hashes):
- BEIR SciFact *train* claims -> their gold abstracts (passages of the gold paper) as positives,
  with hard negatives from the datastore's BM25 and dense rankings (papers not in the qrels).
  A fixed, sorted set of train claims (``dev_queries``) is held out for model selection.
- Optional extra (question, gold context) pairs, e.g. PubMedQA dev questions of ScholarQABench,
  with the same kind of hard negatives.
Test qrels and test queries are never read; the manifest lists every query id used, so a test can
prove it.

Training is listwise: each query's positive competes with its negatives in one softmax. The model
(`retriever.cross_cosine`) scores by a cosine so it starts as good as the bi-encoder. Only the
top layers carry LoRA adapters, so the frozen bottom layers run without autograd (cheaper on CPU).
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from datastore.datastore import Datastore
from datastore.strict import StrictModel
from retriever.protocols import Hit
from retriever.reranker import RERANKER_META
from retriever.training import (
    LoopRecipe,
    LoopRecord,
    ParamGroup,
    TrainingLoop,
    atomic_dir,
    save_adapter,
    sha256_file,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class RerankerTrainConfig(StrictModel):
    """Hyper-parameters of `openscholar train reranker` (defaults fit ~10 minutes on 2 CPU cores)."""

    seed: int = Field(13, description="Seed of the data sampling, the LoRA init and the batch order.")
    base_model: str = Field(BASE_MODEL, description="Encoder the adapter is trained over (the packaged MiniLM).")
    max_tokens: int = Field(128, ge=16, description="Token budget of a (query, passage) pair.")
    negatives: int = Field(3, ge=1, description="Hard negatives per query.")
    negative_pool: int = Field(12, ge=1, description="Negatives are sampled from this many top non-gold papers.")
    queries_per_step: int = Field(8, ge=1, description="Training queries per optimizer step.")
    epochs: int = Field(1, ge=1, description="Passes over the training groups.")
    max_train_queries: int | None = Field(None, ge=1, description="Cap on BEIR training queries.")
    lr: float = Field(5e-4, gt=0, description="Learning rate of the LoRA weights.")
    head_lr: float = Field(1e-2, gt=0, description="Learning rate of the cosine head (scale, bias).")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
    trainable_layers: int = Field(2, ge=1, description="Top encoder layers that carry LoRA adapters.")
    dev_queries: int = Field(100, ge=0, description="Train claims held out for model selection (first N sorted ids).")
    threads: int = Field(0, ge=0, description="torch CPU threads (0: torch's default).")
    max_seconds: float | None = Field(None, gt=0, description="Wall-clock cap of the optimizer loop (the manifest records a stop).")
    bf16: bool | None = Field(None, description="bf16 autocast of the forward pass; None: on exactly when the CPU has native bf16.")
    corpus_queries: int = Field(0, ge=0, description="Pseudo-queries from the corpus (an abstract's last sentence -> the rest).")

    def loop_recipe(self) -> LoopRecipe:
        """The shared loop's settings: AdamW without weight decay, gradient norm clipped at 1, linear
        warmup over 10% of the steps then linear decay."""
        precision = {None: "auto", True: "bf16", False: "fp32"}[self.bf16]
        return LoopRecipe(seed=self.seed, threads=self.threads, precision=precision, schedule="linear",
                          warmup_fraction=0.1, weight_decay=0.0, max_grad_norm=1.0, max_seconds=self.max_seconds)


@dataclass
class Group:
    """One training query: its positive passage text and hard negative texts."""

    qid: str
    source: str
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)


class InputRecord(StrictModel):
    """One input of a training run: what it is and the sha256 of every file read."""

    role: str
    files: dict[str, str] = Field(description="path -> sha256")
    split: str | None = None
    papers: int | None = None


class RerankerTraining(LoopRecord):
    """The loop's record plus what the reranker adds."""

    scale: float = Field(description="The cosine head's learned scale.")
    mining_seconds: float | None = Field(None, description="Seconds spent mining hard negatives.")
    total_seconds: float | None = Field(None, description="Seconds from the start of mining to the trained model.")


class LegacyRerankerTraining(StrictModel):
    """The training record of rerankers trained before the shared loop (the packaged one)."""

    steps: int
    planned_steps: int
    train_seconds: float
    train_cpu_seconds: float
    loss_first20: float | None = None
    loss_last20: float | None = None
    torch_threads: int
    bf16_autocast: bool
    scale: float
    mining_seconds: float | None = None
    total_seconds: float | None = None


class RerankerManifest(StrictModel):
    """What a reranker trained here was trained on (input hashes, every query id) and how."""

    model: str = "cross-encoder reranker (LoRA + head over the base MiniLM)"
    config: RerankerTrainConfig
    inputs: list[InputRecord]
    pairs: int
    groups: int
    query_ids_by_source: dict[str, list[str]]
    held_out_dev_query_ids: list[str]
    training: RerankerTraining | LegacyRerankerTraining
    artifact_sha256: dict[str, str] = Field(description="file name -> sha256 of every other file in the directory.")
    datastore_build_id: str | None = Field(None, description="The datastore the hard negatives were mined from.")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and not (n == 0 and not parts[2].isdigit()):
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


def _text(title: str, text: str) -> str:
    return f"{title}. {text}" if title else text


def held_out_queries(train_qids: Sequence[str], n: int) -> list[str]:
    """The dev claims kept out of training: the first ``n`` train query ids in sorted order.

    Sorted ids (not a random draw) so that fixtures built from ``sorted(train)[:n]`` are unseen.
    """
    return sorted(train_qids)[:n]


Searcher = Callable[[Sequence[str], int], list[list[Hit]]]


def _negatives(
    rankings: Sequence[list[Hit]], is_positive: Callable[[Hit], bool], pool: int, n: int, rng: random.Random
) -> list[str]:
    """``n`` texts sampled from the top ``pool`` non-positive passages, interleaving the rankings."""
    seen: set[str] = set()
    cands: list[str] = []
    for rank in range(max((len(r) for r in rankings), default=0)):
        for ranking in rankings:
            if rank < len(ranking):
                hit = ranking[rank]
                if is_positive(hit) or hit.passage.paper_id in seen:
                    continue
                seen.add(hit.passage.paper_id)
                cands.append(_text(hit.passage.title, hit.passage.text))
        if len(cands) >= pool:
            break
    return rng.sample(cands[:pool], min(n, len(cands[:pool])))


def scifact_groups(
    beir_dir: Path,
    datastore: Datastore,
    searchers: Sequence[Searcher],
    cfg: RerankerTrainConfig,
    rng: random.Random,
    split: str = "train",
) -> tuple[list[Group], list[str], InputRecord]:
    """Training groups from the BEIR ``split`` qrels; returns (groups, held-out ids, input record)."""
    if split == "test":
        raise ValueError("the reranker is never trained on test qrels")
    qrels_path = beir_dir / "qrels" / f"{split}.tsv"
    queries_path = beir_dir / "queries.jsonl"
    qrels = _read_qrels(qrels_path)
    queries = {str(q["_id"]): str(q["text"]) for q in _read_jsonl(queries_path) if str(q["_id"]) in qrels}
    dev = held_out_queries(list(qrels), cfg.dev_queries)
    train_ids = [q for q in sorted(qrels) if q not in set(dev) and q in queries]
    rng.shuffle(train_ids)
    if cfg.max_train_queries:
        train_ids = train_ids[: cfg.max_train_queries]
    texts = [queries[q] for q in train_ids]
    rankings = [s(texts, 60) for s in searchers]
    groups: list[Group] = []
    for i, qid in enumerate(train_ids):
        gold = {d for d, r in qrels[qid].items() if r > 0}
        gold_passages = datastore.get(datastore.passage_ids_of_papers(sorted(gold)))
        if not gold_passages:
            continue
        # The positive: the gold passage ranked highest by any first stage (MaxP), else the first.
        best = gold_passages[0]
        best_rank = math.inf
        for ranking in rankings:
            for rank, hit in enumerate(ranking[i]):
                if hit.passage.paper_id in gold and rank < best_rank:
                    best, best_rank = hit.passage, rank
        negs = _negatives([r[i] for r in rankings], lambda h, g=gold: h.passage.paper_id in g, cfg.negative_pool, cfg.negatives, rng)  # type: ignore[misc]
        if negs:
            groups.append(Group(qid, f"beir-{split}", queries[qid], _text(best.title, best.text), negs))
    record = InputRecord(
        role=f"BEIR {split} qrels and queries",
        files={str(qrels_path): sha256_file(qrels_path), str(queries_path): sha256_file(queries_path)},
        split=split,
    )
    return groups, dev, record


def qa_context_groups(
    path: Path, searchers: Sequence[Searcher], cfg: RerankerTrainConfig, rng: random.Random
) -> tuple[list[Group], InputRecord]:
    """Groups from a ScholarQABench-style file of questions with gold contexts (e.g. PubMedQA dev)."""
    if "scifact" in path.name.lower() and "test" in path.name.lower():
        raise ValueError(f"{path} holds SciFact test claims: never train on them")
    rows = [r for r in _read_jsonl(path) if r.get("input") and r.get("gold_ctx")]
    questions = [str(r["input"]) for r in rows]
    rankings = [s(questions, 40) for s in searchers] if rows else []
    groups: list[Group] = []
    for i, r in enumerate(rows):
        ctx = r["gold_ctx"][0]
        positive = _text(str(ctx.get("title") or ""), str(ctx.get("text") or ""))
        head = str(ctx.get("text") or "")[:200]

        def is_pos(h: Hit, head: str = head) -> bool:
            return bool(head) and (head[:120] in h.passage.text or h.passage.text[:120] in head)

        negs = _negatives([rk[i] for rk in rankings], is_pos, cfg.negative_pool, cfg.negatives, rng)
        if negs and positive.strip():
            groups.append(Group(f"{path.stem}:{i}", path.stem, questions[i], positive, negs))
    record = InputRecord(role="question -> gold context pairs", files={str(path): sha256_file(path)})
    return groups, record


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def corpus_pseudo_groups(
    beir_dir: Path, searchers: Sequence[Searcher], cfg: RerankerTrainConfig, rng: random.Random, n: int
) -> tuple[list[Group], InputRecord]:
    """``n`` pseudo-queries over the BEIR corpus, no qrels read (the inverse-cloze idea, like the
    RouterRetriever paper's generated queries): an abstract's LAST sentence (usually its conclusion,
    the kind of statement a SciFact claim makes) is the query; the title plus the abstract WITHOUT
    that sentence is the positive, so it cannot be matched verbatim; the hard negatives are the top
    BM25 / dense passages of other papers. Abstracts of fewer than 4 sentences or conclusions outside
    8-45 words are skipped; the sample of papers is seeded."""
    corpus_path = beir_dir / "corpus.jsonl"
    docs = _read_jsonl(corpus_path)
    rng.shuffle(docs)
    picked: list[tuple[str, str, str]] = []  # (paper id, query, positive)
    for d in docs:
        if len(picked) >= n:
            break
        sentences = [x.strip() for x in _SENTENCE.split(str(d.get("text") or "").strip()) if x.strip()]
        if len(sentences) < 4 or not 8 <= len(sentences[-1].split()) <= 45:
            continue
        picked.append((str(d["_id"]), sentences[-1], _text(str(d.get("title") or ""), " ".join(sentences[:-1]))))
    rankings = [s([q for _, q, _ in picked], 30) for s in searchers] if picked else []
    groups: list[Group] = []
    for i, (pid, query, positive) in enumerate(picked):
        negs = _negatives([rk[i] for rk in rankings], lambda h, pid=pid: h.passage.paper_id == pid, cfg.negative_pool, cfg.negatives, rng)  # type: ignore[misc]
        if negs:
            groups.append(Group(f"corpus:{pid}", "corpus-pseudo", query, positive, negs))
    record = InputRecord(
        role="corpus pseudo-queries (abstract's last sentence -> title + the rest of the abstract); no qrels",
        files={str(corpus_path): sha256_file(corpus_path)},
        papers=len(groups),
    )
    return groups, record


def build_cross_encoder(cfg: RerankerTrainConfig) -> tuple[Any, Any, Any]:
    """(model, peft encoder, tokenizer): the base MiniLM with LoRA on its top ``trainable_layers``
    layers under the cosine head (`retriever.cross_cosine`); the frozen bottom runs without autograd."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    from retriever.cross_cosine import CrossCosineModel
    from retriever.reranker import resolve_base_model

    base_path = resolve_base_model(cfg.base_model)
    tok = AutoTokenizer.from_pretrained(base_path)
    encoder = AutoModel.from_pretrained(base_path)
    n_layers = int(encoder.config.num_hidden_layers)
    top = list(range(max(0, n_layers - cfg.trainable_layers), n_layers))
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=["query", "key", "value", "dense"],
        layers_to_transform=top,
    )
    peft_encoder = get_peft_model(encoder, lora)
    return CrossCosineModel(peft_encoder), peft_encoder, tok


def group_batches(groups: Sequence[Group], cfg: RerankerTrainConfig) -> tuple[list[list[Group]], int]:
    """(batches, planned steps): ``epochs`` seeded passes over the groups, ``queries_per_step`` a batch
    (the last one may be short)."""
    order = [g for _ in range(cfg.epochs) for g in random.Random(cfg.seed).sample(list(groups), len(groups))]
    steps = math.ceil(len(order) / cfg.queries_per_step)
    return [order[i * cfg.queries_per_step : (i + 1) * cfg.queries_per_step] for i in range(steps)], steps


def listwise_loss(model: Any, tok: Any, cfg: RerankerTrainConfig, loop: TrainingLoop[list[Group]]) -> Callable[[list[Group]], Any]:
    """The loss of a batch: for each query, its positive (index 0) against its negatives in one
    softmax; the mean over the batch's queries."""
    import torch

    n = 1 + cfg.negatives

    def loss_fn(batch: list[Group]) -> Any:
        queries, texts, sizes = [], [], []
        for g in batch:
            cand = [g.positive, *g.negatives][:n]
            queries += [g.query] * len(cand)
            texts += cand
            sizes.append(len(cand))
        enc = tok(queries, texts, truncation="only_second", max_length=cfg.max_tokens, padding=True, return_tensors="pt")
        with loop.autocast():
            logits = model(**enc).logits.squeeze(-1).float()
        loss = torch.zeros(())
        start = 0
        for size in sizes:
            loss = loss + torch.nn.functional.cross_entropy(logits[start : start + size].unsqueeze(0), torch.zeros(1, dtype=torch.long))
            start += size
        return loss / len(sizes)

    return loss_fn


@dataclass
class TrainedCrossEncoder:
    """A trained reranker in memory, not yet written: the model, its peft encoder and the loop's record."""

    model: Any
    peft_encoder: Any
    training: RerankerTraining


def train_cross_encoder(groups: list[Group], cfg: RerankerTrainConfig, *, progress: bool = True) -> TrainedCrossEncoder:
    """Train LoRA + head with the listwise loss on the shared loop; `save_reranker` writes it."""
    loop: TrainingLoop[list[Group]] = TrainingLoop(cfg.loop_recipe(), name="reranker", progress=progress)
    model, peft_encoder, tok = build_cross_encoder(cfg)
    adapters = [p for p in peft_encoder.parameters() if p.requires_grad]
    head = [model.scale, model.bias]
    batches, steps = group_batches(groups, cfg)
    record = loop.run(model, [ParamGroup(adapters, cfg.lr), ParamGroup(head, cfg.head_lr)], batches,
                      listwise_loss(model, tok, cfg, loop), steps)
    training = RerankerTraining(**record.model_dump(), scale=round(float(model.scale.detach()), 3))
    return TrainedCrossEncoder(model, peft_encoder, training)


def save_reranker(
    out_dir: Path, trained: TrainedCrossEncoder, cfg: RerankerTrainConfig, groups: list[Group], dev: list[str],
    inputs: list[InputRecord], *, mining_seconds: float | None = None, total_seconds: float | None = None,
    datastore_build_id: str | None = None,
) -> RerankerManifest:
    """Write the adapter, the head, the loading metadata and the manifest (what the model was trained
    on, with input hashes and every query id used) into ``out_dir`` all at once (`atomic_dir`)."""
    from safetensors.torch import save_file

    from retriever.cross_cosine import HEAD_FILE

    training = trained.training.model_copy(update={"mining_seconds": mining_seconds, "total_seconds": total_seconds})
    by_source: dict[str, list[str]] = {}
    for g in groups:
        by_source.setdefault(g.source, []).append(g.qid)
    with atomic_dir(out_dir) as tmp:
        save_adapter(trained.peft_encoder, tmp, base_model=cfg.base_model)
        save_file(trained.model.head_state(), str(tmp / HEAD_FILE))
        meta = {"base_model": cfg.base_model, "max_tokens": cfg.max_tokens, "kind": "lora-cross-cosine"}
        (tmp / RERANKER_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        manifest = RerankerManifest(
            config=cfg, inputs=inputs, pairs=sum(1 + len(g.negatives) for g in groups), groups=len(groups),
            query_ids_by_source={k: sorted(v) for k, v in by_source.items()}, held_out_dev_query_ids=dev,
            training=training, artifact_sha256={p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()},
            datastore_build_id=datastore_build_id,
        )
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    return manifest


def read_manifest(directory: Path) -> RerankerManifest:
    """The typed manifest of a reranker trained here."""
    return RerankerManifest.model_validate_json((Path(directory) / MANIFEST).read_text(encoding="utf-8"))
