"""The ``stacked`` judge: a calibrated logistic combiner over cheap readers of a pair.

The features (`openscholar.judges.stack_features`): word overlap (plain, IDF-weighted, bigram,
best window), the packaged MiniLM's bi-encoder cosine with the passage and its best window, the
3-way judge trained here read window by window (its logits), and negation / number / direction
mismatch detectors. Two logistic models over them (standardized), both fit on the judge's TRAIN
groups only (`openscholar.judges.train_stacked`, ``openscholar train stacked-judge``):

- relevance, P(the passage is what the sentence draws on): word overlap and cosine features only,
  fit on ScholarQA-Multi expert attributions (a sentence vs the contexts it cites and those it does
  not: how the product uses a judge, a sentence against whole passages);
- faithfulness, P(supports / contradicts / neither | on topic): every feature, fit on on-topic
  pairs only (SciFact SUPPORT and CONTRADICT rationales, cited Multi contexts) and their synthetic
  perturbations (negated, reversed, changed numbers -> contradicts; swapped entity -> neither).

``supports = relevance * P(supports | on topic)``, ``contradicts = relevance * P(contradicts | on
topic)``: a passage off the topic neither supports nor contradicts; one on topic must also agree.
One model for both jobs ranked the expert attributions below the lexical judge (the SciFact
negatives are chosen for word overlap, so overlap learns a negative weight there).

One rule on top: the support score is scaled by the share of the sentence's quantities (24%, 36
hours) that the passage states, so a changed number is never supported (the synthetic number
pairs are too few for the models to learn it).

Calibration: the decision thresholds were chosen on out-of-fold predictions of a grouped
cross-validation over the train groups (split by claim cluster / question, never on held-apart or
test data), then every score is mapped piecewise-linearly so that the chosen threshold sits at 0.5:
``supports >= 0.5`` is the judge's decision, for citations (``citations.threshold`` None) and for
contradiction marks (``citations.contradiction_threshold`` 0.5) alike.

The artifact is a directory with ``manifest.json`` (weights, thresholds, the data and figures) and
``idf.json`` (an IDF table of SciFact abstracts, the 208 test abstracts excluded); a copy ships in
``openscholar/judges/artifacts/support-stacked``. The manifest names the sha256 of the trained
judge's adapter it was fit over; a different adapter is refused (the weights would not fit it).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openscholar.judges.nli import JudgeUnavailable
from openscholar.judges.protocol import Judgement, support_scores
from openscholar.judges.stack_features import FEATURES, body_of, pair_features
from openscholar.judges.trained import PACKAGED_JUDGE, TrainedJudge

PACKAGED_STACKED = Path(__file__).resolve().parent / "artifacts" / "support-stacked"
MANIFEST = "manifest.json"
IDF = "idf.json"
CLASSES = ("supports", "contradicts", "neither")


def default_stacked_path(cache_dir: Path | None) -> Path:
    """One trained here (cache_dir/judge-stacked) when present, else the packaged one."""
    if cache_dir is not None and (Path(cache_dir).expanduser() / "judge-stacked" / MANIFEST).is_file():
        return Path(cache_dir).expanduser() / "judge-stacked"
    return PACKAGED_STACKED


def adapter_sha256(trained_path: Path) -> str:
    from retriever.training import sha256_file

    return sha256_file(Path(trained_path) / "adapter_model.safetensors")


def to_half(p: np.ndarray, threshold: float) -> np.ndarray:
    """Piecewise-linear map of [0, 1] onto itself sending ``threshold`` to 0.5 (order kept)."""
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    return np.where(p < t, 0.5 * p / t, 0.5 + 0.5 * (p - t) / (1 - t))


class Linear:
    """A logistic model stored in the manifest: feature names, standardization, weights, classes."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.columns = [FEATURES.index(f) for f in spec["features"]]
        self.mean = np.asarray(spec["mean"], dtype=np.float64)
        self.scale = np.asarray(spec["scale"], dtype=np.float64)
        self.coef = np.asarray(spec["coef"], dtype=np.float64)  # (1 or classes, features)
        self.intercept = np.asarray(spec["intercept"], dtype=np.float64)
        self.classes = [str(c) for c in spec["classes"]]

    def logits(self, features: np.ndarray) -> np.ndarray:
        return ((features[:, self.columns] - self.mean) / self.scale) @ self.coef.T + self.intercept

    def positive(self, features: np.ndarray) -> np.ndarray:
        """P(class 1) of a binary model."""
        return 1.0 / (1.0 + np.exp(-self.logits(features)[:, 0]))

    def by_class(self, features: np.ndarray, order: Sequence[str]) -> np.ndarray:
        """Softmax probabilities of a multinomial model, columns in ``order``."""
        z = self.logits(features)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return p[:, [self.classes.index(c) for c in order]]


def combine(relevance: np.ndarray, faithful: np.ndarray) -> np.ndarray:
    """(supports, contradicts, neither) = (r * P(s|on topic), r * P(c|on topic), the rest)."""
    s, c = relevance * faithful[:, 0], relevance * faithful[:, 1]
    return np.stack([s, c, 1.0 - s - c], axis=1)


class FeatureReader:
    """Reads pairs into the `FEATURES` matrix: the trained 3-way judge and the bi-encoder, loaded once."""

    def __init__(self, trained: TrainedJudge, idf: dict[str, float], default_idf: float,
                 embedder: Any = None) -> None:
        self.trained = trained
        self.idf = idf
        self.default_idf = default_idf
        self._embedder = embedder
        self._lock = threading.Lock()

    def warm_up(self) -> FeatureReader:
        self.trained.warm_up()
        with self._lock:
            if self._embedder is None:
                from retriever.st_embedder import SentenceTransformerEmbedder

                self._embedder = SentenceTransformerEmbedder().warm_up()
        return self

    def features(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        self.warm_up()
        window_lists = [self.trained.windows_of(s, p) for s, p in pairs]
        flat = [(s, w) for (s, _), wins in zip(pairs, window_lists, strict=True) for w in wins]
        probs = self.trained.probabilities(flat)
        texts = list(dict.fromkeys([s for s, _ in pairs] + [body_of(p) for _, p in pairs]
                                   + [w for wins in window_lists for w in wins]))
        vecs = np.asarray(self._embedder.embed(texts), dtype=np.float64)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = vecs / np.where(norms > 0, norms, 1.0)
        row = {t: i for i, t in enumerate(texts)}
        window_probs, window_vecs, start = [], [], 0
        for wins in window_lists:
            window_probs.append(probs[start:start + len(wins)])
            window_vecs.append(vecs[[row[w] for w in wins]] if wins else np.zeros((0, vecs.shape[1])))
            start += len(wins)
        return pair_features(pairs, window_lists, window_probs, vecs[[row[s] for s, _ in pairs]],
                             vecs[[row[body_of(p)] for _, p in pairs]], window_vecs, self.idf, self.default_idf)


class StackedJudge:
    """The stacked support judge read from an artifact directory; models load on first use."""

    name = "stacked"
    threshold = 0.5  # the calibrated decision, after the piecewise map (see module doc)

    def __init__(self, path: str | Path = PACKAGED_STACKED, *, trained_path: str | Path | None = None,
                 windows_per_passage: int | None = 8, check_adapter: bool = True) -> None:
        self.path = Path(path)
        manifest_file = self.path / MANIFEST
        if not manifest_file.is_file() or not (self.path / IDF).is_file():
            raise JudgeUnavailable(
                f"no stacked support judge at {self.path}",
                hint="run `openscholar train stacked-judge`, or set citations.judge to 'trained' or 'lexical'")
        self.manifest: dict[str, Any] = json.loads(manifest_file.read_text(encoding="utf-8"))
        if list(self.manifest["features"]) != list(FEATURES):
            raise JudgeUnavailable(f"the stacked judge at {self.path} was fit on other features",
                                   hint="re-run `openscholar train stacked-judge` with this version")
        self.relevance = Linear(self.manifest["relevance"])
        self.faithfulness = Linear(self.manifest["faithfulness"])
        self.support_threshold = float(self.manifest["calibration"]["support_threshold"])
        self.contradict_threshold = float(self.manifest["calibration"]["contradict_threshold"])
        idf = json.loads((self.path / IDF).read_text(encoding="utf-8"))
        trained_dir = Path(trained_path) if trained_path is not None else PACKAGED_JUDGE
        if check_adapter and self.manifest.get("trained_adapter_sha256") not in (None, adapter_sha256(trained_dir)):
            raise JudgeUnavailable(
                f"the stacked judge at {self.path} was fit over another trained judge than {trained_dir}",
                hint="re-run `openscholar train stacked-judge` after training a judge, or use citations.judge 'trained'")
        self.reader = FeatureReader(TrainedJudge(trained_dir, windows_per_passage=windows_per_passage),
                                    idf["idf"], float(idf["default_idf"]))

    @classmethod
    def from_config(cls, config: Any, *, cache_dir: Path | None = None, **_: object) -> StackedJudge:
        """From `CitationConfig` (``judge_windows``); ``cache_dir`` may hold a stacked judge trained here.
        It always reads the trained judge it was fit over (the packaged one unless trained here)."""
        path = default_stacked_path(cache_dir)
        trained = (Path(cache_dir).expanduser() / "judge") if path != PACKAGED_STACKED and cache_dir else None
        return cls(path, trained_path=trained, windows_per_passage=config.judge_windows)

    def warm_up(self) -> StackedJudge:
        self.reader.warm_up()
        return self

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n, 3) uncalibrated (supports, contradicts, neither) from a `FEATURES` matrix."""
        return combine(self.relevance.positive(features), self.faithfulness.by_class(features, CLASSES))

    def with_windows(self, windows_per_passage: int | None) -> StackedJudge:
        """This judge reading at most ``windows_per_passage`` windows per passage (closest by words),
        sharing the loaded models (`NLIJudge.with_windows`)."""
        if windows_per_passage == self.reader.trained.windows_per_passage:
            return self
        self.warm_up()  # loaded once, shared by the copy
        other = copy.copy(self)
        other.reader = copy.copy(self.reader)
        other.reader.trained = self.reader.trained.with_windows(windows_per_passage)
        return other

    def windows_of(self, statement: str, passage: str) -> list[str]:
        """The evidence windows of ``passage`` this judge reads for ``statement`` (`NLIJudge.windows_of`)."""
        return self.reader.trained.windows_of(statement, passage)

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        if not pairs:
            return []
        return self.judge_features(self.reader.features(pairs))

    def judge_features(self, x: np.ndarray) -> list[Judgement]:
        """The calibrated judgements of a `FEATURES` matrix (what `judge` returns for its pairs)."""
        p = self.probabilities(x)
        # Rule: a quantity the sentence states and the passage does not is not supported by it.
        p[:, 0] *= 1.0 - x[:, FEATURES.index("number_missing")]
        s = to_half(p[:, 0], self.support_threshold)
        c = to_half(p[:, 1], self.contradict_threshold)
        return [Judgement(supports=float(a), contradicts=float(b), neither=float(n))
                for a, b, n in zip(s, c, p[:, 2], strict=True)]

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return support_scores(self.judge(pairs))
