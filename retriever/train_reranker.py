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

import hashlib
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datastore.datastore import Datastore
from retriever.protocols import Hit
from retriever.reranker import ADAPTER_CONFIG, RERANKER_META

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class RerankerTrainConfig:
    """Hyper-parameters of `openscholar train reranker` (defaults fit ~10 minutes on 2 CPU cores)."""

    seed: int = 13
    base_model: str = BASE_MODEL
    max_tokens: int = 128
    negatives: int = 3
    negative_pool: int = 12
    queries_per_step: int = 8
    epochs: int = 1
    max_train_queries: int | None = None
    lr: float = 5e-4
    head_lr: float = 1e-2
    lora_r: int = 16
    lora_alpha: int = 32
    trainable_layers: int = 2
    dev_queries: int = 100
    threads: int = 0
    max_seconds: float | None = None  # wall-clock cap of the optimizer loop (the manifest records a stop)
    bf16: bool | None = None  # bf16 autocast of the forward pass; None: on exactly when the CPU has native bf16
    corpus_queries: int = 0  # pseudo-queries from the corpus (an abstract's last sentence -> the rest)


@dataclass
class Group:
    """One training query: its positive passage text and hard negative texts."""

    qid: str
    source: str
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
) -> tuple[list[Group], list[str], dict[str, Any]]:
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
    record = {
        "role": f"BEIR {split} qrels and queries",
        "files": {str(qrels_path): sha256_file(qrels_path), str(queries_path): sha256_file(queries_path)},
        "split": split,
    }
    return groups, dev, record


def qa_context_groups(
    path: Path, searchers: Sequence[Searcher], cfg: RerankerTrainConfig, rng: random.Random
) -> tuple[list[Group], dict[str, Any]]:
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
    record = {"role": "question -> gold context pairs", "files": {str(path): sha256_file(path)}}
    return groups, record


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def corpus_pseudo_groups(
    beir_dir: Path, searchers: Sequence[Searcher], cfg: RerankerTrainConfig, rng: random.Random, n: int
) -> tuple[list[Group], dict[str, Any]]:
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
    record = {
        "role": "corpus pseudo-queries (abstract's last sentence -> title + the rest of the abstract); no qrels",
        "files": {str(corpus_path): sha256_file(corpus_path)},
        "papers": len(groups),
    }
    return groups, record


def train_cross_encoder(
    groups: list[Group], cfg: RerankerTrainConfig, out_dir: Path, *, progress: bool = True
) -> dict[str, Any]:
    """Train LoRA + head with a listwise loss; save the adapter (and head) to ``out_dir``."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    from retriever.cross_cosine import HEAD_FILE, CrossCosineModel
    from retriever.reranker import resolve_base_model
    from retriever.st_embedder import cpu_has_native_bf16

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bf16 = bool(cpu_has_native_bf16()) if cfg.bf16 is None else cfg.bf16
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
    model = CrossCosineModel(peft_encoder)
    adapters = [p for p in peft_encoder.parameters() if p.requires_grad]
    head = [model.scale, model.bias]
    opt = torch.optim.AdamW([{"params": adapters, "lr": cfg.lr}, {"params": head, "lr": cfg.head_lr}], weight_decay=0.0)
    order = [g for _ in range(cfg.epochs) for g in random.Random(cfg.seed).sample(groups, len(groups))]
    steps = math.ceil(len(order) / cfg.queries_per_step)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    model.train()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    losses: list[float] = []
    iterator: Any = range(steps)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="reranker", unit="step")
    for step in iterator:
        batch = order[step * cfg.queries_per_step : (step + 1) * cfg.queries_per_step]
        n = 1 + cfg.negatives
        queries, texts, sizes = [], [], []
        for g in batch:
            cand = [g.positive, *g.negatives][:n]
            queries += [g.query] * len(cand)
            texts += cand
            sizes.append(len(cand))
        enc = tok(queries, texts, truncation="only_second", max_length=cfg.max_tokens, padding=True, return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**enc).logits.squeeze(-1).float()
        loss = torch.zeros(())
        start = 0
        for size in sizes:  # listwise: the positive (index 0) against its negatives
            loss = loss + torch.nn.functional.cross_entropy(logits[start : start + size].unsqueeze(0), torch.zeros(1, dtype=torch.long))
            start += size
        loss = loss / len(sizes)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(adapters + head, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
        if progress and hasattr(iterator, "set_postfix"):
            iterator.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
            log.warning("reranker: stopped at step %d of %d (max_seconds %.0f)", step + 1, steps, cfg.max_seconds)
            break
    seconds = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_encoder.save_pretrained(str(out_dir))
    save_file(model.head_state(), str(out_dir / HEAD_FILE))
    (out_dir / "README.md").unlink(missing_ok=True)  # peft's generic model card; the manifest says more
    _strip_local_paths(out_dir / ADAPTER_CONFIG, cfg.base_model)
    meta = {"base_model": cfg.base_model, "max_tokens": cfg.max_tokens, "kind": "lora-cross-cosine"}
    (out_dir / RERANKER_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return {
        "steps": len(losses),
        "planned_steps": steps,
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(time.process_time() - cpu0, 1),
        "loss_first20": round(float(np.mean(losses[:20])), 4) if losses else None,
        "loss_last20": round(float(np.mean(losses[-20:])), 4) if losses else None,
        "torch_threads": torch.get_num_threads(),
        "bf16_autocast": bf16,
        "scale": round(float(model.scale.detach()), 3),
    }


def _strip_local_paths(adapter_config: Path, base_model: str) -> None:
    """Record the base model's id, not this machine's site-packages path, in the adapter config."""
    data = json.loads(adapter_config.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = base_model
    adapter_config.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


def write_manifest(
    out_dir: Path, cfg: RerankerTrainConfig, groups: list[Group], dev: list[str], inputs: list[dict[str, Any]],
    training: dict[str, Any], extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the model was trained on, with input hashes and every query id used."""
    by_source: dict[str, list[str]] = {}
    for g in groups:
        by_source.setdefault(g.source, []).append(g.qid)
    manifest = {
        "model": "cross-encoder reranker (LoRA + head over the base MiniLM)",
        "config": asdict(cfg),
        "inputs": inputs,
        "pairs": sum(1 + len(g.negatives) for g in groups),
        "groups": len(groups),
        "query_ids_by_source": {k: sorted(v) for k, v in by_source.items()},
        "held_out_dev_query_ids": dev,
        "training": training,
        "artifact_sha256": {
            p.name: sha256_file(p) for p in sorted(out_dir.iterdir()) if p.is_file() and p.name != MANIFEST
        },
        **(extra or {}),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest
