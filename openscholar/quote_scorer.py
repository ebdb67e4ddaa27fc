"""The quote scorer: the packaged reranker read on (question, sentence) pairs, calibrated here.

The reranker trained here (retriever/models/reranker) scores a query against a passage with a
scaled cosine, so its raw logits rank sentences well but say nothing absolute: every sentence of
an unrelated abstract still maps to ~0.99 under a sigmoid. ``openscholar train quotes`` fits a
logistic head ``P(rationale) = sigmoid(a * logit + b)`` on SciFact TRAIN claims (the judge's train
groups: rationale sentences vs the other sentences of the gold abstract and of a BM25 neighbour),
with the sentence's share of the question's content words as a second feature (claims share many
words with their rationale; the cross-encoder adds paraphrase), and reports on the held-apart groups
how well each ranks the rationale sentences (MRR, top-1). The artifact is a small JSON manifest.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PACKAGED_QUOTE_SCORER = Path(__file__).resolve().parent / "artifacts" / "quote-scorer" / "manifest.json"


class CalibratedScorer:
    """Any cross-encoder ``score(query, texts)`` mapped through ``a * logit + w * overlap + b`` (a logit
    of P(quote)); ``overlap`` is the share of the query's content words in the text."""

    def __init__(self, base: Any, a: float = 1.0, b: float = 0.0, w: float = 0.0) -> None:
        self.base, self.a, self.b, self.w = base, a, b, w

    def warm_up(self) -> CalibratedScorer:
        warm = getattr(self.base, "warm_up", None)
        if callable(warm):
            warm()
        return self

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        from openscholar.judges.lexical import overlap

        logits = np.asarray(self.base.score(query, texts), dtype=np.float64)
        words = np.asarray([overlap(query, t) for t in texts]) if self.w else 0.0
        return self.a * logits + self.w * words + self.b


def load_calibration(path: Path = PACKAGED_QUOTE_SCORER) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _examples(scifact: Path, scholarqabench: Path, split: str, limit: int, seed: int) -> list[tuple[str, list[str], set[int]]]:
    """(claim, candidate sentences, indices of rationale sentences) for claims of ``split``."""
    import bm25s

    from openscholar.judges.support_data import (
        _clusters,
        read_jsonl,
        split_of,
        test_claims_and_docs,
    )
    from openscholar.sentences import split_sentences

    corpus = {d["_id"]: d for d in read_jsonl(scifact / "corpus.jsonl")}
    _, test_docs = test_claims_and_docs(scholarqabench, corpus)
    cited: dict[str, set[str]] = {}
    for line in (scifact / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        qid, did, _ = line.split("\t")
        cited.setdefault(qid, set()).add(did)
    claims = [q for q in read_jsonl(scifact / "queries.jsonl") if q["_id"] in cited and q.get("metadata")
              and not ((cited[q["_id"]] | set(q["metadata"])) & test_docs)]
    cluster = _clusters(claims, cited)
    claims = [q for q in claims if split_of(f"scifact:{cluster[q['_id']]}", 0.2) == split]
    random.Random(seed).shuffle(claims)
    claims = claims[:limit]
    doc_ids = [d for d in corpus if d not in test_docs]
    ret = bm25s.BM25()
    ret.index(bm25s.tokenize([corpus[d]["title"] + " " + corpus[d]["text"] for d in doc_ids], stopwords="en",
                             show_progress=False), show_progress=False)
    found, _ = ret.retrieve(bm25s.tokenize([q["text"] for q in claims], stopwords="en", show_progress=False), k=4,
                            show_progress=False)
    out = []
    for row, q in enumerate(claims):
        doc_id, evidence = next(iter(q["metadata"].items()))
        sents = split_sentences(corpus[doc_id]["text"])
        rationale = {i for e in evidence for i in e["sentences"] if i < len(sents)}
        other = next((doc_ids[i] for i in found[row].tolist() if doc_ids[i] not in cited[q["_id"]] | set(q["metadata"])), None)
        if other is not None:
            sents = sents + split_sentences(corpus[other]["text"])
        if rationale:
            out.append((q["text"], sents, rationale))
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, iters: int = 50) -> np.ndarray:
    """Weights (one per column of ``x``, then the bias) maximising the likelihood of
    y ~ sigmoid(x @ w + b), by Newton's method with a tiny ridge."""
    x = np.atleast_2d(x.T).T if x.ndim == 1 else x
    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(design @ w)))
        g = design.T @ (p - y) + 1e-3 * w
        h = (design * (p * (1 - p) + 1e-9)[:, None]).T @ design + 1e-3 * np.eye(len(w))
        step = np.linalg.solve(h, g)
        w = w - step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _ranking(examples: list[tuple[str, list[str], set[int]]], scores: list[np.ndarray]) -> dict[str, float]:
    rr, top1 = [], []
    for (_, _, rationale), s in zip(examples, scores, strict=True):
        order = list(np.argsort(-s, kind="stable"))
        first = min(order.index(i) for i in rationale)
        rr.append(1 / (first + 1))
        top1.append(float(first == 0))
    return {"mrr": round(float(np.mean(rr)), 4), "top1": round(float(np.mean(top1)), 4)}


def train_quote_scorer(scifact: Path, scholarqabench: Path, base: Any, out: Path, *, train_claims: int = 150,
                       dev_claims: int = 100, seed: int = 13, base_name: str = "reranker") -> dict[str, Any]:
    """Fit the calibration on train claims, evaluate on held-apart ones, write the manifest to ``out``."""
    from openscholar.judges.lexical import overlap

    train = _examples(scifact, scholarqabench, "train", train_claims, seed)
    dev = _examples(scifact, scholarqabench, "dev", dev_claims, seed)
    raw_train = [np.asarray(base.score(c, s), dtype=np.float64) for c, s, _ in train]
    lex_train = [np.asarray([overlap(c, t) for t in s]) for c, s, _ in train]
    x = np.stack([np.concatenate(raw_train), np.concatenate(lex_train)], axis=1)
    y = np.concatenate([[float(i in r) for i in range(len(s))] for _, s, r in train])
    a, w, b = (float(v) for v in fit_logistic(x, y))
    raw_dev = [np.asarray(base.score(c, s), dtype=np.float64) for c, s, _ in dev]
    lexical = [np.asarray([overlap(c, t) for t in s]) for c, s, _ in dev]
    combined = [a * r + w * lx + b for r, lx in zip(raw_dev, lexical, strict=True)]
    ydev = np.concatenate([[float(i in r) for i in range(len(s))] for _, s, r in dev])
    pdev = 1 / (1 + np.exp(-np.concatenate(combined)))
    manifest = {
        "kind": "quote-scorer",
        "base": base_name,
        "a": round(a, 6), "w": round(w, 6), "b": round(b, 6),
        "data": "SciFact train-qrels claims with rationale labels, none touching the ScholarQABench 208; train and "
                "held-apart groups as the support judge's split",
        "train": {"claims": len(train), "sentences": len(y), "positives": int(y.sum())},
        "heldout": {"claims": len(dev), "sentences": len(ydev), "calibrated": _ranking(dev, combined),
                    "cross_encoder_alone": _ranking(dev, raw_dev), "lexical": _ranking(dev, lexical),
                    "brier": round(float(np.mean((pdev - ydev) ** 2)), 4),
                    "brier_base_rate": round(float(np.mean((ydev.mean() - ydev) ** 2)), 4),
                    "mean_p_rationale": round(float(pdev[ydev == 1].mean()), 4),
                    "mean_p_other": round(float(pdev[ydev == 0].mean()), 4)},
        "seed": seed,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
