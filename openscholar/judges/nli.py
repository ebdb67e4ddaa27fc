"""The ``nli`` judge: any Hugging Face NLI sequence-classification model as a 3-way support judge.

A production deployment sets ``citations.nli_model`` to an NLI model id (a DeBERTa/RoBERTa MNLI
model, an attribution model with entail/contradict/neutral labels) or a local directory. The labels
are read from the model's ``id2label`` (entailment/support -> supports, contradiction/refute ->
contradicts, neutral/not-enough-info/not_entailment -> neither), or given with ``label_map``.

A passage is read window by window (``window_sentences`` consecutive sentences, stride 1), so long
passages never lose their conclusion to truncation: ``supports`` and ``contradicts`` are the best
window's, ``neither`` the lowest. ``windows_per_passage`` bounds the work for long passages by
reading only the windows sharing most content words with the statement (None: all). The judge
trained here (`openscholar.judges.trained`) is this class over a LoRA adapter on the packaged MiniLM.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from datastore.errors import ErrorKind, ScholarError
from openscholar.judges.lexical import content_words
from openscholar.judges.protocol import RELATIONS, Judgement, Relation, support_scores
from openscholar.sentences import sentence_spans, windows

_NAMES: dict[Relation, tuple[str, ...]] = {
    "supports": ("entail", "support", "attribut"),
    "contradicts": ("contradict", "refute"),
    "neither": ("neutral", "neither", "not_entail", "not entail", "not_enough", "not enough", "nei", "extrapol"),
}


class JudgeUnavailable(ScholarError):
    """The judge's model cannot be loaded or its labels cannot be read."""

    kind: ErrorKind = "unavailable"


def relation_of_label(name: str) -> Relation | None:
    """The relation an ``id2label`` name stands for, or None when the name says nothing."""
    low = name.lower()
    for relation in ("neither", "contradicts", "supports"):  # "not_entailment" before "entailment"
        if any(key in low for key in _NAMES[relation]):  # type: ignore[index]
            return relation  # type: ignore[return-value]
    return None


def label_indices(id2label: dict[int, str], label_map: dict[str, Relation] | None = None) -> dict[Relation, list[int]]:
    """Output indices per relation, from ``label_map`` (label name -> relation) or the names."""
    out: dict[Relation, list[int]] = {r: [] for r in RELATIONS}
    unknown = []
    for index, name in sorted(id2label.items()):
        relation = (label_map or {}).get(name) or relation_of_label(name)
        if relation is None:
            unknown.append(name)
        else:
            out[relation].append(int(index))
    if unknown or not out["supports"]:
        raise JudgeUnavailable(
            f"cannot tell what the labels {sorted(id2label.values())} of this NLI model mean",
            hint="set citations.nli_labels, e.g. {\"LABEL_0\": \"supports\", \"LABEL_1\": \"neither\", "
            "\"LABEL_2\": \"contradicts\"}",
        )
    return out


def load_sequence_classifier(model: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a local directory or a Hugging Face id, in eval mode."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        net = AutoModelForSequenceClassification.from_pretrained(model)
    except OSError as exc:
        raise JudgeUnavailable(
            f"cannot load the NLI model {model!r} ({exc.__class__.__name__})",
            hint="set citations.nli_model to a local directory or a Hugging Face id this host can download",
        ) from None
    net.eval()
    return net, tokenizer


class NLIJudge:
    """A sequence-classification NLI model read window by window; loads lazily, once; thread-safe."""

    name = "nli"
    threshold = 0.5

    def __init__(self, model: str, *, label_map: dict[str, Relation] | None = None, max_tokens: int = 256,
                 batch_size: int = 32, window_sentences: int = 2, windows_per_passage: int | None = 8) -> None:
        self.model_id = model
        self.label_map = label_map
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.window_sentences = window_sentences
        self.windows_per_passage = windows_per_passage
        self._net: Any = None
        self._tokenizer: Any = None
        self._indices: dict[Relation, list[int]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Any, *, cache_dir: Path | None = None, **_: object) -> NLIJudge:
        """From `CitationConfig`: ``nli_model``, ``nli_labels``, ``judge_windows``."""
        return cls(config.nli_model, label_map=config.nli_labels or None, windows_per_passage=config.judge_windows)

    def _load(self) -> tuple[Any, Any]:
        return load_sequence_classifier(self.model_id)

    def warm_up(self) -> NLIJudge:
        with self._lock:
            if self._net is None:
                net, tokenizer = self._load()
                id2label = {int(k): str(v) for k, v in net.config.id2label.items()}
                self._indices = label_indices(id2label, self.label_map)
                self._net, self._tokenizer = net, tokenizer
        return self

    def with_windows(self, windows_per_passage: int | None) -> Self:
        """This judge reading at most ``windows_per_passage`` windows per passage, sharing the loaded
        model (loaded here first, so it is loaded once)."""
        if windows_per_passage == self.windows_per_passage:
            return self
        self.warm_up()
        other = copy.copy(self)
        other.windows_per_passage = windows_per_passage
        return other

    # -- scoring ------------------------------------------------------------------------------
    def windows_of(self, statement: str, passage: str) -> list[str]:
        """The evidence windows of ``passage`` the model reads for ``statement``."""
        body = passage.split("\n", 1)[1] if "\n" in passage else passage  # the title line is not evidence
        spans = sentence_spans(body)
        texts = [body[spans[a].start:spans[b - 1].end] for a, b in windows(spans, self.window_sentences)]
        if not texts:
            return [body.strip() or passage]
        n = self.windows_per_passage
        if n is not None and len(texts) > n:
            words = content_words(statement)
            ranked = sorted(range(len(texts)), key=lambda i: (-len(words & content_words(texts[i])), i))
            texts = [texts[i] for i in sorted(ranked[:n])]
        return texts

    def probabilities(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, float, float]]:
        """(supports, contradicts, neither) probabilities of (statement, evidence text) pairs, unwindowed."""
        import torch

        self.warm_up()
        out: list[tuple[float, float, float]] = [(0.0, 0.0, 1.0)] * len(pairs)
        # Batches of similar length (longest first), so little of a batch is padding; results in input order.
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = [pairs[i] for i in order[start:start + self.batch_size]]
                enc = self._tokenizer([a for a, _ in batch], [b for _, b in batch], truncation="longest_first",
                                      max_length=self.max_tokens, padding=True, return_tensors="pt")
                probs = torch.softmax(self._net(**enc).logits.float(), dim=-1)
                for i, row in zip(order[start:start + self.batch_size], probs.tolist(), strict=True):
                    s, c, n = (sum(row[k] for k in self._indices[r]) for r in RELATIONS)
                    out[i] = (s, c, n)
        return out

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        if not pairs:
            return []
        flat: list[tuple[str, str]] = []
        owner: list[int] = []
        for n, (statement, passage) in enumerate(pairs):
            for window in self.windows_of(statement, passage):
                flat.append((statement, window))
                owner.append(n)
        best = [[0.0, 0.0, 1.0] for _ in pairs]
        for n, (s, c, ne) in zip(owner, self.probabilities(flat), strict=True):
            b = best[n]
            b[0], b[1], b[2] = max(b[0], s), max(b[1], c), min(b[2], ne)
        return [Judgement(supports=s, contradicts=c, neither=ne) for s, c, ne in best]

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return support_scores(self.judge(pairs))
