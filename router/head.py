"""A trained routing head: which domain's expert should encode a query (``router.routing = "head"``).

The paper's pilot routing (``router.pilots``) compares a query's final base embedding with pilot
centroids. Measured here (docs/router_report.md), that cannot tell a SciFact claim from a paper
title or a PubMedQA question: final sentence embeddings keep what a text is about and drop how it
is phrased, while the experts differ by how queries are phrased. The head is a multinomial logistic
regression over the mean-pooled hidden state of an EARLY base layer (``router.head_layer``, 2 by
default), which still carries phrasing, trained to name the domain (expert) each pilot query came
from. It is the paper's ExpertClassifierRouter idea, fitted on the same held-out pilot sets as the
pilots, so nothing the experts trained on is used and it is reproducible from the expert
directories.

The features come out of the same base forward that routing already runs (``output_hidden_states``),
so the head adds no transformer pass. Fitting is deterministic (full-batch gradient descent from
zeros, class-balanced) and takes seconds; adding or removing an expert refits the head over the
remaining pilot sets (no expert is retrained).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from router.errors import NoExperts, RouterError
from router.experts import load_versioned_json, save_versioned_json

log = logging.getLogger(__name__)

HEAD_FILE = "routing_head.json"
HEAD_VERSION = 1


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float = 1e-4, iters: int = 800,
                 lr: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced multinomial logistic regression by full-batch gradient descent from zeros
    (deterministic): weights (dim, classes) and biases (classes,)."""
    x = np.asarray(x, dtype=np.float64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weight = (len(y) / (n_classes * np.maximum(counts, 1.0)))[y][:, None]
    onehot = np.eye(n_classes)[y]
    w = np.zeros((x.shape[1], n_classes))
    b = np.zeros(n_classes)
    for _ in range(iters):
        g = (_softmax(x @ w + b) - onehot) * weight / len(y)
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum(axis=0)
    return w.astype(np.float32), b.astype(np.float32)


@dataclass
class RoutingHead:
    """Logistic regression from early-layer base features to expert names."""

    base_model: str
    layer: int
    experts: list[str]
    weights: np.ndarray  # (dim, experts)
    bias: np.ndarray  # (experts,)
    l2: float = 1e-4
    iters: int = 800
    trained_on: dict[str, str] = field(default_factory=dict)  # expert -> pilot_set_hash
    cv_accuracy: dict[str, float] = field(default_factory=dict)  # expert -> 5-fold CV accuracy

    def logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float32) @ self.weights + self.bias

    def probabilities(self, features: np.ndarray, experts: Sequence[str]) -> np.ndarray:
        """(n, len(experts)) probabilities over ``experts`` (a subset of the head's, in that order);
        an expert the head does not know gets 0."""
        known = [self.experts.index(e) for e in experts if e in self.experts]
        if not known:
            raise RouterError(
                f"the routing head knows none of the experts {list(experts)}",
                hint="refit it with `openscholar router pilots`",
            )
        z = self.logits(features)
        out = np.zeros((len(z), len(experts)), dtype=np.float32)
        cols = [i for i, e in enumerate(experts) if e in self.experts]
        out[:, cols] = _softmax(z[:, known])
        return out

    def save(self, root: Path) -> Path:
        data = {
            "format_version": HEAD_VERSION,
            "base_model": self.base_model,
            "layer": self.layer,
            "experts": self.experts,
            "l2": self.l2,
            "iters": self.iters,
            "trained_on": dict(sorted(self.trained_on.items())),
            "cv_accuracy": self.cv_accuracy,
            "dim": int(self.weights.shape[0]),
            "weights_f32": base64.b64encode(np.asarray(self.weights, dtype="<f4").tobytes()).decode("ascii"),
            "bias": [float(v) for v in self.bias],
        }
        return save_versioned_json(root / HEAD_FILE, data)

    @classmethod
    def load(cls, root: Path) -> RoutingHead:
        d = load_versioned_json(Path(root) / HEAD_FILE, HEAD_VERSION, missing="no routing head",
                                hint="fit it with `openscholar router pilots`")
        weights = np.frombuffer(base64.b64decode(d["weights_f32"]), dtype="<f4").reshape(int(d["dim"]), len(d["experts"]))
        return cls(d["base_model"], int(d["layer"]), list(d["experts"]), weights.astype(np.float32),
                   np.asarray(d["bias"], dtype=np.float32), float(d["l2"]), int(d["iters"]),
                   dict(d.get("trained_on", {})), dict(d.get("cv_accuracy", {})))


def layer_features(backbone: Any, texts: Sequence[str], layer: int, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalized hidden states of base ``layer`` (0: the embeddings) for ``texts``."""
    import torch

    parts = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = backbone.tokenize(texts[i : i + batch_size])
            _, feats = backbone.forward_with_layer(backbone.model, batch, layer)
            parts.append(feats.float().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, backbone.dim), np.float32)


def cross_validated(x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float, iters: int, folds: int = 5,
                    seed: int = 0) -> np.ndarray:
    """Out-of-fold predicted class of every row (seeded fold assignment)."""
    fold = np.random.default_rng(seed).integers(0, folds, len(y))
    pred = np.zeros(len(y), dtype=np.int64)
    for f in range(folds):
        train, test = fold != f, fold == f
        if not test.any() or len(np.unique(y[train])) < 2:
            continue
        w, b = fit_logistic(x[train], y[train], n_classes, l2=l2, iters=iters)
        pred[test] = (x[test] @ w + b).argmax(axis=1)
    return pred


def fit_head(backbone: Any, experts: Sequence[Any], *, layer: int = 2, l2: float = 1e-4, iters: int = 800) -> RoutingHead:
    """Fit the head on every expert's pilot set (its held-out domain queries), labelled by expert."""
    experts = sorted(experts, key=lambda e: e.name)
    if len(experts) < 2:
        raise NoExperts("a routing head needs at least two experts", hint="train another expert first")
    texts: list[str] = []
    labels: list[int] = []
    for j, e in enumerate(experts):
        queries = sorted({p.query for p in e.pilot_set()})
        texts += queries
        labels += [j] * len(queries)
    y = np.asarray(labels, dtype=np.int64)
    x = layer_features(backbone, texts, layer)
    n = len(experts)
    oof = cross_validated(x, y, n, l2=l2, iters=iters)
    cv = {e.name: round(float((oof[y == j] == j).mean()), 4) for j, e in enumerate(experts)}
    w, b = fit_logistic(x, y, n, l2=l2, iters=iters)
    log.info("routing head (layer %d) 5-fold CV accuracy per expert: %s", layer, cv)
    return RoutingHead(backbone.model_name, layer, [e.name for e in experts], w, b, l2, iters,
                       {e.name: e.manifest.pilot_set_hash for e in experts}, cv)
