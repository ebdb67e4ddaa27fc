"""Fitting the stacked support judge (`openscholar.judges.stacked`): ``openscholar train stacked-judge``.

Data: the support judge's pairs (`openscholar.judges.support_data.build_judge_pairs`), the same
split by claim cluster / question as the trained judge's. Only the TRAIN groups are fit on:

1. the `FEATURES` of every pair (the trained judge and the bi-encoder read each pair once; a few
   minutes on one core);
2. a grouped k-fold over the train groups picks each model's L2 strength (out-of-fold log loss) and gives
   out-of-fold probabilities, on which the decision thresholds are chosen: the support threshold
   that best separates supports from the rest (balanced accuracy), and the contradiction
   threshold likewise for contradicts;
3. the relevance and faithfulness models (`openscholar.judges.stacked`) are fit on all train pairs.

The held-apart (dev) groups are only evaluated, after everything is chosen: ROC-AUC of the support
score on the ScholarQA-Multi and SciFact pairs and accuracy at the chosen threshold, recorded in
the manifest beside the same figures of the lexical judge. The artifact is ``manifest.json`` +
``idf.json`` (IDF of SciFact abstracts, the ScholarQABench 208's abstracts excluded), a few
hundred KB, written atomically.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from openscholar.judges.lexical import LexicalJudge
from openscholar.judges.stack_features import FEATURES, document_frequencies, idf_table
from openscholar.judges.stacked import CLASSES, IDF, MANIFEST, FeatureReader, adapter_sha256
from openscholar.judges.support_data import (
    MULTI_FILE,
    SCIFACT_TEST_FILE,
    JudgePair,
    build_judge_pairs,
    read_jsonl,
    test_claims_and_docs,
)
from openscholar.judges.trained import PACKAGED_JUDGE, TrainedJudge

C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
FOLDS = 5


def roc_auc(pos: list[float], neg: list[float]) -> float | None:
    """P(a positive scores above a negative), ties counting half."""
    if not pos or not neg:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(np.asarray(pos + neg))
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def build_idf(scifact: Path, scholarqabench: Path) -> dict[str, Any]:
    corpus = {d["_id"]: d for d in read_jsonl(scifact / "corpus.jsonl")}
    _, test_docs = test_claims_and_docs(scholarqabench, corpus)
    df, n = document_frequencies([d["text"] for i, d in corpus.items() if i not in test_docs])
    idf, default = idf_table(df, n)
    return {"idf": idf, "default_idf": default, "documents": n, "excluded_test_docs": len(test_docs),
            "source": "SciFact corpus abstracts minus the ScholarQABench SciFact 208's"}


def features_of(reader: FeatureReader, pairs: list[JudgePair], batch: int = 256, progress: bool = True) -> np.ndarray:
    out = []
    t0 = time.perf_counter()
    for i in range(0, len(pairs), batch):
        out.append(reader.features([(p.statement, p.evidence) for p in pairs[i:i + batch]]))
        if progress:
            print(f"  features {min(i + batch, len(pairs))}/{len(pairs)} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return np.vstack(out) if out else np.zeros((0, len(FEATURES)))


RELEVANCE_FEATURES = ("overlap", "idf_overlap", "bigram_overlap", "window_overlap", "cos_passage", "cos_window",
                      "statement_words", "passage_words", "overlap_x_cos")


def _labels(pairs: list[JudgePair]) -> np.ndarray:
    return np.asarray([CLASSES.index(p.label) for p in pairs])


def _masks(pairs: list[JudgePair]) -> tuple[np.ndarray, np.ndarray]:
    """(relevance rows: real ScholarQA-Multi pairs; faithfulness rows: on-topic pairs and perturbations)."""
    multi = np.asarray([p.source in ("multi-cited", "multi-uncited") for p in pairs])
    faithful = np.asarray([p.label != "neither" or p.source.startswith("synth") for p in pairs])
    return multi, faithful


def _fit_linear(x: np.ndarray, y: np.ndarray, columns: list[int], c: float) -> dict[str, Any]:
    """A logistic model (binary or multinomial, balanced classes) as the manifest stores it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x[:, columns])
    model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(scaler.transform(x[:, columns]), y)
    return {"features": [FEATURES[i] for i in columns], "mean": scaler.mean_.round(6).tolist(),
            "scale": scaler.scale_.round(6).tolist(), "coef": model.coef_.round(6).tolist(),
            "intercept": model.intercept_.round(6).tolist(), "C": c,
            "classes": [int(k) if len(model.classes_) == 2 else CLASSES[k] for k in model.classes_]}


def fit_models(x: np.ndarray, pairs: list[JudgePair], c_rel: float, c_faith: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(relevance, faithfulness) fit on ``pairs`` (see `openscholar.judges.stacked`)."""
    y = _labels(pairs)
    multi, faithful = _masks(pairs)
    rel_cols = [FEATURES.index(f) for f in RELEVANCE_FEATURES]
    relevance = _fit_linear(x[multi], (y[multi] == 0).astype(int), rel_cols, c_rel)
    faith = _fit_linear(x[faithful], y[faithful], list(range(len(FEATURES))), c_faith)
    return relevance, faith


def predict(x: np.ndarray, relevance: dict[str, Any], faith: dict[str, Any]) -> np.ndarray:
    from openscholar.judges.stacked import Linear, combine

    return combine(Linear(relevance).positive(x), Linear(faith).by_class(x, CLASSES))


def best_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """The threshold with the best balanced accuracy (and that accuracy), over a 0.01 grid."""
    best, best_acc = 0.5, -1.0
    for t in np.arange(0.01, 0.99, 0.01):
        tpr = float(((scores >= t) & positive).sum() / max(1, positive.sum()))
        tnr = float(((scores < t) & ~positive).sum() / max(1, (~positive).sum()))
        if (tpr + tnr) / 2 > best_acc:
            best, best_acc = float(round(t, 2)), (tpr + tnr) / 2
    return best, best_acc


def precise_threshold(scores: np.ndarray, positive: np.ndarray, beta: float = 0.5) -> tuple[float, float]:
    """The threshold with the best F-beta (beta < 1 weighs precision more), over a 0.01 grid."""
    best, best_f = 0.5, -1.0
    for t in np.arange(0.01, 0.99, 0.01):
        pred = scores >= t
        tp = float((pred & positive).sum())
        precision, recall = tp / max(1.0, float(pred.sum())), tp / max(1.0, float(positive.sum()))
        f = (1 + beta**2) * precision * recall / (beta**2 * precision + recall) if precision + recall else 0.0
        if f > best_f:
            best, best_f = float(round(t, 2)), f
    return best, best_f


def cross_validate(x: np.ndarray, pairs: list[JudgePair], seed: int) -> dict[str, Any]:
    """Grouped k-fold over the train groups: each model's C by out-of-fold log loss on its own rows,
    then out-of-fold (supports, contradicts, neither) of the combination (for the thresholds)."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import GroupKFold

    from openscholar.judges.stacked import Linear

    y = _labels(pairs)
    groups = [p.group for p in pairs]
    folds = list(GroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed).split(x, y, groups))
    multi, faithful = _masks(pairs)
    losses: dict[str, dict[float, float]] = {"relevance": {}, "faithfulness": {}}
    for c in C_GRID:
        rel_oof = np.full(len(y), np.nan)
        faith_oof = np.full((len(y), len(CLASSES)), np.nan)
        for tr, te in folds:
            rel, faith = fit_models(x[tr], [pairs[i] for i in tr], c, c)
            rel_oof[te] = Linear(rel).positive(x[te])
            faith_oof[te] = Linear(faith).by_class(x[te], CLASSES)
        losses["relevance"][c] = log_loss((y[multi] == 0).astype(int), rel_oof[multi], labels=[0, 1])
        losses["faithfulness"][c] = log_loss(y[faithful], faith_oof[faithful], labels=[0, 1, 2])
    c_rel = min(C_GRID, key=lambda c: losses["relevance"][c])
    c_faith = min(C_GRID, key=lambda c: losses["faithfulness"][c])
    oof = np.zeros((len(y), len(CLASSES)))
    for tr, te in folds:
        rel, faith = fit_models(x[tr], [pairs[i] for i in tr], c_rel, c_faith)
        oof[te] = predict(x[te], rel, faith)
    return {"C_relevance": c_rel, "C_faithfulness": c_faith, "oof": oof,
            "log_loss_by_C": {k: {str(c): round(v, 4) for c, v in d.items()} for k, d in losses.items()}}


def _split_figures(scores: np.ndarray, contra: np.ndarray, pairs: list[JudgePair], threshold: float) -> dict[str, Any]:
    """AUC and accuracy (supports vs rest at ``threshold``) on Multi, SciFact and synthetic pairs."""
    out: dict[str, Any] = {}
    for name, keep in (("multi", lambda p: p.source.startswith("multi")),
                       ("scifact", lambda p: p.source.startswith("scifact")),
                       ("synthetic", lambda p: p.source.startswith("synth"))):
        idx = [i for i, p in enumerate(pairs) if keep(p)]
        if not idx:
            continue
        pos = [float(scores[i]) for i in idx if pairs[i].label == "supports"]
        neg = [float(scores[i]) for i in idx if pairs[i].label != "supports"]
        auc = roc_auc(pos, neg)
        acc = np.mean([(scores[i] >= threshold and scores[i] > contra[i]) == (pairs[i].label == "supports")
                       for i in idx])
        out[name] = {"auc": None if auc is None else round(auc, 4), "accuracy": round(float(acc), 4), "pairs": len(idx)}
    return out


def train_stacked_judge(scifact: Path, scholarqabench: Path, out: Path, *, trained_path: Path = PACKAGED_JUDGE,
                        seed: int = 13, cache: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Fit, calibrate and evaluate the stacked judge; write the artifact to ``out``; returns the manifest.
    ``cache``: an .npz where the features are kept between runs (keyed by the pairs' count)."""
    from openscholar.judges.stacked import to_half
    from retriever.training import atomic_dir, sha256_file

    t0 = time.perf_counter()
    data = build_judge_pairs(scifact, scholarqabench)
    train, dev = data["train"], data["dev"]
    idf = build_idf(scifact, scholarqabench)
    if cache is not None and cache.is_file():
        stored = np.load(cache)
        x_train, x_dev = stored["train"], stored["dev"]
        if x_train.shape != (len(train), len(FEATURES)) or x_dev.shape != (len(dev), len(FEATURES)):
            raise ValueError(f"{cache} holds features of other pairs: delete it")
    else:
        reader = FeatureReader(TrainedJudge(trained_path, windows_per_passage=8), idf["idf"], idf["default_idf"])
        x_train = features_of(reader, train, progress=progress)
        x_dev = features_of(reader, dev, progress=progress)
        if cache is not None:
            np.savez(cache, train=x_train, dev=x_dev)
    feature_seconds = time.perf_counter() - t0
    y = _labels(train)
    cv = cross_validate(x_train, train, seed)
    oof = cv["oof"]
    s_t, s_bacc = best_threshold(oof[:, 0], y == 0)
    c_t, c_f05 = precise_threshold(oof[:, 1], y == 1)
    s_pred, c_pred = oof[:, 0] >= s_t, oof[:, 1] >= c_t
    oof_precision = {"supports": round(float((s_pred & (y == 0)).sum() / max(1, s_pred.sum())), 4),
                     "supports_recall": round(float((s_pred & (y == 0)).sum() / max(1, (y == 0).sum())), 4),
                     "contradicts": round(float((c_pred & (y == 1)).sum() / max(1, c_pred.sum())), 4),
                     "contradicts_recall": round(float((c_pred & (y == 1)).sum() / max(1, (y == 1).sum())), 4)}
    relevance, faith = fit_models(x_train, train, cv["C_relevance"], cv["C_faithfulness"])
    p_dev = predict(x_dev, relevance, faith)
    s_dev, c_dev = to_half(p_dev[:, 0], s_t), to_half(p_dev[:, 1], c_t)
    lex = np.asarray(LexicalJudge().score([(p.statement, p.evidence) for p in dev]))
    heldout = {"stacked": _split_figures(s_dev, c_dev, dev, 0.5),
               "lexical": _split_figures(lex, np.zeros(len(dev)), dev, 0.5),
               "pairs": len(dev), "groups": len({p.group for p in dev}),
               "accuracy_3way": round(float(np.mean(p_dev.argmax(1) == _labels(dev))), 4),
               "note": "figures of the pairs as the features were read in training (8 windows per passage); "
                       "bench/faithfulness.py reads the same pairs through the judge"}
    manifest = {
        "kind": "support-judge-stacked",
        "format_version": 2,
        "features": list(FEATURES),
        "relevance": relevance | {"fit_on": "ScholarQA-Multi train questions: expert sentence vs cited (1) / uncited (0) "
                                            "contexts"},
        "faithfulness": faith | {"fit_on": "on-topic train pairs (SciFact SUPPORT / CONTRADICT rationales, cited Multi "
                                           "contexts) and their synthetic perturbations"},
        "combination": "supports = relevance * P(supports | on topic); contradicts = relevance * P(contradicts | on topic)",
        "calibration": {"support_threshold": s_t, "support_balanced_accuracy_oof": round(s_bacc, 4),
                        "contradict_threshold": c_t, "contradict_f0.5_oof": round(c_f05, 4),
                        "rules": "supports: best balanced accuracy of supports vs the rest; contradicts: best F0.5 "
                                 "(precision weighted: a true sentence wrongly marked contradicted costs more than "
                                 "a missed contradiction, which still stays unsupported)",
                        "oof_precision_recall_at_thresholds": oof_precision,
                        "chosen_on": f"out-of-fold predictions of a {FOLDS}-fold cross-validation grouped by claim "
                                     "cluster / question over the TRAIN groups only; scores are mapped so that "
                                     "each threshold sits at 0.5",
                        "log_loss_by_C": cv["log_loss_by_C"]},
        "trained_adapter_sha256": adapter_sha256(trained_path),
        "windows_per_passage": 8,
        "data": {"counts": data["report"]["counts"],
                 "scifact_overlap_with_scholarqabench_208": {k: v for k, v in data["report"]["scifact"].items()
                                                             if k != "used_claim_ids"},
                 "inputs": {str(p): sha256_file(p) for p in (scifact / "queries.jsonl", scifact / "qrels" / "train.tsv",
                                                             scholarqabench / MULTI_FILE,
                                                             scholarqabench / SCIFACT_TEST_FILE)}},
        "idf": {k: v for k, v in idf.items() if k not in ("idf",)} | {"words": len(idf["idf"])},
        "heldout": heldout,
        "seconds": {"features": round(feature_seconds, 1), "total": round(time.perf_counter() - t0, 1)},
        "command": "openscholar train stacked-judge",
    }
    with atomic_dir(out) as tmp:
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (tmp / IDF).write_text(json.dumps({"idf": idf["idf"], "default_idf": idf["default_idf"]},
                                          separators=(",", ":")) + "\n", encoding="utf-8")
    return manifest
