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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openscholar.quote_features import DEFAULT_FINDING, SentenceContext

PACKAGED_QUOTE_SCORER = Path(__file__).resolve().parent / "artifacts" / "quote-scorer" / "manifest.json"


class CalibratedScorer:
    """Any cross-encoder ``score(query, texts)`` mapped through ``a * logit + w * overlap + b`` plus, when
    fitted, ``sum(finding[f] * feature f)`` over question-independent finding features
    (`openscholar.quote_features`): a logit of P(quote). ``overlap`` is the share of the query's content
    words in the text. Without ``finding`` weights (a manifest from before them) the score is the
    two-feature one exactly."""

    def __init__(self, base: Any, a: float = 1.0, b: float = 0.0, w: float = 0.0,
                 finding: dict[str, float] | None = None) -> None:
        from openscholar.quote_features import FEATURES

        self.base, self.a, self.b, self.w = base, a, b, w
        self.finding = {k: float(v) for k, v in (finding or {}).items() if v}
        unknown = sorted(set(self.finding) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown quote finding features {unknown} (known: {', '.join(FEATURES)}): the "
                             f"manifest was fitted by another version; refit it with `openscholar train quotes`")

    def warm_up(self) -> CalibratedScorer:
        warm = getattr(self.base, "warm_up", None)
        if callable(warm):
            warm()
        return self

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """P(quote) logits of ``texts``, each taken as its own passage (see `score_in_context`)."""
        return self.score_in_context(query, texts, None)

    def score_in_context(self, query: str, texts: Sequence[str],
                         contexts: Sequence[SentenceContext] | None) -> np.ndarray:
        """P(quote) logits of ``texts``; ``contexts`` (one per text: its passage and span) feed the
        position and section features, else each text is taken as its own passage."""
        from openscholar.judges.lexical import overlap
        from openscholar.quote_features import feature_matrix

        logits = np.asarray(self.base.score(query, texts), dtype=np.float64)
        words = np.asarray([overlap(query, t) for t in texts]) if self.w else 0.0
        out = self.a * logits + self.w * words + self.b
        if self.finding:
            names = list(self.finding)
            out = out + feature_matrix(texts, contexts, names) @ np.asarray([self.finding[n] for n in names])
        return out


def load_calibration(path: Path = PACKAGED_QUOTE_SCORER) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


@dataclass
class _Example:
    group: str  # the claim's cluster (claims sharing an abstract): cross-validation folds never split one
    claim: str
    sentences: list[str]
    rationale: set[int]
    contexts: list[SentenceContext]  # each sentence's abstract and span, for the finding features


def _examples(scifact: Path, scholarqabench: Path, split: str, limit: int, seed: int) -> list[_Example]:
    """Claims of ``split`` with their candidate sentences (the gold abstract's, then a BM25
    neighbour's) and the indices of the rationale sentences among them."""
    import bm25s

    from openscholar.judges.support_data import (
        _clusters,
        read_jsonl,
        split_of,
        test_claims_and_docs,
    )
    from openscholar.sentences import sentence_spans

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

    def spans(text: str) -> list[SentenceContext]:
        return [SentenceContext(text, sp.start, sp.end) for sp in sentence_spans(text)]

    out = []
    for row, q in enumerate(claims):
        doc_id, evidence = next(iter(q["metadata"].items()))
        contexts = spans(corpus[doc_id]["text"])
        rationale = {i for e in evidence for i in e["sentences"] if i < len(contexts)}
        other = next((doc_ids[i] for i in found[row].tolist() if doc_ids[i] not in cited[q["_id"]] | set(q["metadata"])), None)
        if other is not None:
            contexts = contexts + spans(corpus[other]["text"])
        if rationale:
            out.append(_Example(cluster[q["_id"]], q["text"], [c.passage[c.start:c.end] for c in contexts], rationale, contexts))
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


def _ranking(examples: list[_Example], scores: list[np.ndarray]) -> dict[str, float]:
    rr, top1 = [], []
    for ex, s in zip(examples, scores, strict=True):
        order = list(np.argsort(-s, kind="stable"))
        first = min(order.index(i) for i in ex.rationale)
        rr.append(1 / (first + 1))
        top1.append(float(first == 0))
    return {"mrr": round(float(np.mean(rr)), 4), "top1": round(float(np.mean(top1)), 4)}


def _columns(base: Any, examples: list[_Example]) -> dict[str, list[np.ndarray]]:
    """Per example, one array per feature: the cross-encoder's logit, the word overlap, every finding feature."""
    from openscholar.judges.lexical import overlap
    from openscholar.quote_features import FEATURES, feature_matrix

    cols: dict[str, list[np.ndarray]] = {"logit": [], "overlap": [], **{f: [] for f in FEATURES}}
    for ex in examples:
        cols["logit"].append(np.asarray(base.score(ex.claim, ex.sentences), dtype=np.float64))
        cols["overlap"].append(np.asarray([overlap(ex.claim, t) for t in ex.sentences]))
        found = feature_matrix(ex.sentences, ex.contexts)
        for j, f in enumerate(FEATURES):
            cols[f].append(found[:, j])
    return cols


def _labels(examples: Sequence[_Example]) -> np.ndarray:
    return np.concatenate([[float(i in ex.rationale) for i in range(len(ex.sentences))] for ex in examples])


def _fit(names: Sequence[str], train: dict[str, list[np.ndarray]], y: np.ndarray) -> dict[str, float]:
    """Logistic weights of the columns ``names`` (and ``bias``) fitted on the train columns."""
    x = np.stack([np.concatenate(train[n]) for n in names], axis=1)
    weights = fit_logistic(x, y)
    return {**{n: float(v) for n, v in zip(names, weights[:-1], strict=True)}, "bias": float(weights[-1])}


def _apply(weights: dict[str, float], cols: dict[str, list[np.ndarray]]) -> list[np.ndarray]:
    n = len(cols["logit"])
    return [sum((weights[f] * cols[f][i] for f in weights if f != "bias"), np.zeros_like(cols["logit"][i]))
            + weights["bias"] for i in range(n)]


OLD_FEATURES = ("logit", "overlap")


def _subset(cols: dict[str, list[np.ndarray]], rows: Sequence[int]) -> dict[str, list[np.ndarray]]:
    return {k: [v[i] for i in rows] for k, v in cols.items()}


def _cross_validated(names: Sequence[str], examples: list[_Example], cols: dict[str, list[np.ndarray]],
                     folds: int) -> dict[str, float]:
    """MRR / top-1 of the model on ``names`` over ``folds`` folds of the train claims, by claim cluster."""
    import hashlib

    fold = [int.from_bytes(hashlib.sha256(ex.group.encode()).digest()[:4], "big") % folds for ex in examples]
    held: list[_Example] = []
    scores: list[np.ndarray] = []
    for k in range(folds):
        fit_rows = [i for i, f in enumerate(fold) if f != k]
        test_rows = [i for i, f in enumerate(fold) if f == k]
        if not fit_rows or not test_rows:
            continue
        weights = _fit(names, _subset(cols, fit_rows), _labels([examples[i] for i in fit_rows]))
        scores += _apply(weights, _subset(cols, test_rows))
        held += [examples[i] for i in test_rows]
    return _ranking(held, scores)


def select_finding_sets(examples: list[_Example], cols: dict[str, list[np.ndarray]], *, folds: int = 5,
                        min_gain: float = 0.002) -> tuple[list[str], list[dict[str, Any]]]:
    """The feature sets of `quote_features.FEATURE_SETS` to add to the two features, chosen on the train
    claims alone (never the held-apart ones the table reports): greedy forward selection by
    cross-validated MRR, stopping when no set adds ``min_gain``. Returns the chosen sets and the
    selection's steps (each with its cross-validated MRR / top-1)."""
    from openscholar.quote_features import FEATURE_SETS

    chosen: list[str] = []
    best = _cross_validated(OLD_FEATURES, examples, cols, folds)
    steps: list[dict[str, Any]] = [{"sets": [], **best}]
    while len(chosen) < len(FEATURE_SETS):
        trials = {}
        for name in FEATURE_SETS:
            if name not in chosen:
                feats = OLD_FEATURES + tuple(f for n in [*chosen, name] for f in FEATURE_SETS[n])
                trials[name] = _cross_validated(feats, examples, cols, folds)
        name = max(trials, key=lambda n: (trials[n]["mrr"], trials[n]["top1"]))
        if trials[name]["mrr"] < best["mrr"] + min_gain:
            break
        chosen.append(name)
        best = trials[name]
        steps.append({"sets": list(chosen), **best})
    return chosen, steps


def train_quote_scorer(scifact: Path, scholarqabench: Path, base: Any, out: Path, *, train_claims: int = 300,
                       dev_claims: int = 100, seed: int = 13, base_name: str = "reranker",
                       finding: Sequence[str] | None = DEFAULT_FINDING, write: str = "if-better") -> dict[str, Any]:
    """Fit the calibration on train claims, evaluate on held-apart ones, and write the manifest to ``out``.

    Fits, on the same split, the two-feature model (reranker logit, word overlap), the new model with the
    ``finding`` features (`quote_features.DEFAULT_FINDING` by default; None: the feature sets
    `select_finding_sets` picks by cross-validation on the train claims, always reported as
    ``train.selection``), every finding feature together, and each feature set of
    `quote_features.FEATURE_SETS` with the two features and alone; reports each one's held-apart MRR /
    top-1 in ``heldout.models``. ``write``: 'if-better' writes the finding model only when it beats the
    two-feature model on both held-apart MRR and top-1 (else the two-feature one); 'finding' / 'old'
    write that model regardless."""
    from openscholar.quote_features import FEATURE_SETS, FEATURES

    if write not in ("if-better", "finding", "old"):
        raise ValueError(f"write={write!r}: use 'if-better', 'finding' or 'old'")
    unknown = sorted(set(finding or ()) - set(FEATURES))
    if unknown:
        raise ValueError(f"unknown finding features {unknown} (known: {', '.join(FEATURES)})")
    train = _examples(scifact, scholarqabench, "train", train_claims, seed)
    dev = _examples(scifact, scholarqabench, "dev", dev_claims, seed)
    tcols, dcols = _columns(base, train), _columns(base, dev)
    y, ydev = _labels(train), _labels(dev)
    sets, steps = select_finding_sets(train, tcols)
    selected = tuple(f for n in sets for f in FEATURE_SETS[n])
    selection: dict[str, Any] = {"by": "forward selection, 5-fold cross-validated MRR on the train claims",
                                 "steps": steps, "selected": list(selected)}
    finding = selected if finding is None else tuple(finding)
    selection["features"] = list(finding)

    models: dict[str, tuple[str, ...]] = {"old (logit + overlap)": OLD_FEATURES, "new": OLD_FEATURES + finding,
                                          "logit + overlap + cross-validated selection": OLD_FEATURES + selected,
                                          "logit + overlap + every finding feature": OLD_FEATURES + FEATURES}
    for name, feats in FEATURE_SETS.items():
        models[f"logit + overlap + {name}"] = OLD_FEATURES + feats
    for name, feats in FEATURE_SETS.items():
        models[f"{name} alone"] = feats
    if finding:
        models["finding features alone"] = finding
    models["every finding feature alone"] = FEATURES
    fitted = {name: _fit(feats, tcols, y) for name, feats in models.items()}
    scored = {name: _apply(w, dcols) for name, w in fitted.items()}
    ranks = {name: _ranking(dev, scored[name]) for name in models}
    table = {name: {**ranks[name], "weights": {k: round(v, 6) for k, v in fitted[name].items()}} for name in models}
    old, new = ranks["old (logit + overlap)"], ranks["new"]
    better = bool(finding) and new["mrr"] > old["mrr"] and new["top1"] > old["top1"]
    chosen = "new" if write == "finding" or (write == "if-better" and better) else "old (logit + overlap)"
    weights = fitted[chosen]
    pdev = 1 / (1 + np.exp(-np.concatenate(scored[chosen])))
    manifest: dict[str, Any] = {
        "kind": "quote-scorer",
        "base": base_name,
        "a": round(weights["logit"], 6), "w": round(weights["overlap"], 6), "b": round(weights["bias"], 6),
    }
    if chosen == "new":
        manifest["finding"] = {f: round(weights[f], 6) for f in finding}
    manifest.update({
        "data": "SciFact train-qrels claims with rationale labels, none touching the ScholarQABench 208; train and "
                "held-apart groups as the support judge's split",
        "train": {"claims": len(train), "sentences": len(y), "positives": int(y.sum()), "selection": selection},
        "heldout": {"claims": len(dev), "sentences": len(ydev), "model": chosen,
                    "finding_beats_old": better, "calibrated": _ranking(dev, scored[chosen]),
                    "cross_encoder_alone": _ranking(dev, dcols["logit"]), "lexical": _ranking(dev, dcols["overlap"]),
                    "brier": round(float(np.mean((pdev - ydev) ** 2)), 4),
                    "brier_base_rate": round(float(np.mean((ydev.mean() - ydev) ** 2)), 4),
                    "mean_p_rationale": round(float(pdev[ydev == 1].mean()), 4),
                    "mean_p_other": round(float(pdev[ydev == 0].mean()), 4),
                    "models": table},
        "seed": seed,
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
