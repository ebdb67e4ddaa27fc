"""Rerankers: re-score (query, title + passage) pairs of a candidate list with a cross-encoder.

``CrossEncoderReranker`` loads any Hugging Face sequence-classification cross-encoder (one logit,
or two where the second is "relevant"), or the reranker trained here: a LoRA adapter plus a
classification head over the packaged base MiniLM (``openscholar train reranker``), merged into the
base at load time so inference costs the same as a plain cross-encoder.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from retriever.config import RerankerConfig
from retriever.errors import ModelUnavailable
from retriever.protocols import Hit

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
RERANKER_META = "reranker.json"


@runtime_checkable
class Reranker(Protocol):
    """Re-scores hits for a query; returns the best ``k`` (all when None), best first."""

    stage: str

    def rerank(self, query: str, hits: Sequence[Hit], k: int | None = None) -> list[Hit]: ...


def pair_text(hit: Hit) -> str:
    """The passage side of a pair: title + text, as in training."""
    p = hit.passage
    return f"{p.title}. {p.text}" if p.title else p.text


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 1e-9 else np.zeros_like(x)


class CrossEncoderReranker:
    """Cross-encoder over (query, title + passage); thread-safe, loaded lazily once.

    ``model_path`` may name several cross-encoders: an ensemble, scored by the sum of its members'
    logits, each z-scored over the candidates. The final score is that score, or, with ``first_stage_weight`` w > 0 or any
    ``stage_weights``, ``z(logit) + w * z(previous score) + sum_s w_s * z(score at stage s)``
    (z-scores over the candidates, `stage_features`): a weak reranker then refines the first-stage
    evidence instead of replacing it.
    """

    stage = "rerank"

    def __init__(
        self, config: RerankerConfig | None = None, model_path: str | Path | Sequence[str | Path] | None = None
    ) -> None:
        self.config = config or RerankerConfig()
        paths = [model_path] if isinstance(model_path, (str, Path)) else list(model_path or [self.config.model])
        if not paths:
            raise ValueError("a CrossEncoderReranker needs at least one model")
        self.model_paths = [str(p) for p in paths]
        self._members: list[tuple[Any, Any, int]] = []  # (model, tokenizer, index of the relevant logit)
        self._lock = threading.Lock()

    # -- loading --------------------------------------------------------------------------------
    def warm_up(self) -> CrossEncoderReranker:
        self._load()
        return self

    def _load(self) -> list[tuple[Any, Any, int]]:
        if self._members:
            return self._members
        with self._lock:
            if not self._members:
                members = []
                for path in self.model_paths:
                    try:
                        model, tokenizer = load_cross_encoder(path)
                    except OSError as exc:
                        raise ModelUnavailable(
                            f"cannot load reranker {path!r} ({exc})",
                            hint="train the default one with `openscholar train reranker`, or set "
                            "retrieval.reranker.model to a cached HF cross-encoder id or a local directory",
                        ) from exc
                    labels = int(getattr(model.config, "num_labels", 1))
                    members.append((model, tokenizer, 1 if labels == 2 else 0))
                self._members = members
        return self._members

    @property
    def uses_bf16(self) -> bool:
        """bf16 autocast: per ``precision``; under auto only on CPUs with native bf16."""
        if self.config.precision == "auto":
            from retriever.st_embedder import cpu_has_native_bf16

            return bool(cpu_has_native_bf16())
        return self.config.precision == "bf16"

    # -- scoring --------------------------------------------------------------------------------
    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Relevance of (query, text) pairs, in the order given: the cross-encoder's logits, or for an
        ensemble the sum of its members' logits, each z-scored over ``texts``."""
        members = self._load()
        if len(members) == 1:
            return self._logits(members[0], query, texts)
        return np.sum([_zscore(self._logits(m, query, texts).astype(np.float64)) for m in members], axis=0).astype(np.float32)

    def _logits(self, member: tuple[Any, Any, int], query: str, texts: Sequence[str]) -> np.ndarray:
        import torch

        model, tok, positive = member
        out: list[np.ndarray] = []
        bs = self.config.batch_size
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.uses_bf16):
            for i in range(0, len(texts), bs):
                batch = tok(
                    [query] * len(texts[i : i + bs]), list(texts[i : i + bs]), truncation="only_second",
                    max_length=self.config.max_tokens, padding=True, return_tensors="pt",
                )
                logits = model(**batch).logits
                out.append(logits[:, positive].float().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def rerank(self, query: str, hits: Sequence[Hit], k: int | None = None) -> list[Hit]:
        """Re-score all ``hits`` (callers pass the candidates to rerank) and sort them."""
        if not hits:
            return []
        logits = self.score(query, [pair_text(h) for h in hits])
        final = logits.astype(np.float64)
        w = self.config.first_stage_weight
        extra = {s: v for s, v in self.config.stage_weights.items() if v > 0}
        if (w > 0 or extra) and len(hits) > 1:
            final = _zscore(final)
            if w > 0:
                final = final + w * _zscore(np.asarray([h.score for h in hits], dtype=np.float64))
            for stage, feature in stage_features(hits, list(extra)).items():
                final = final + extra[stage] * _zscore(feature)
        out = [
            Hit(h.passage, float(f), {**h.scores, self.stage: float(s)})
            for h, s, f in zip(hits, logits, final, strict=True)
        ]
        out.sort(key=lambda h: -h.score)
        return out[:k] if k is not None else out


def stage_features(hits: Sequence[Hit], stages: Sequence[str]) -> dict[str, np.ndarray]:
    """Each named first stage's own score of every candidate (``hit.scores[stage]``); a candidate
    that stage did not return gets the lowest score the stage gave among the candidates (0 when it
    gave none)."""
    out: dict[str, np.ndarray] = {}
    for stage in stages:
        present = [h.scores[stage] for h in hits if stage in h.scores]
        floor = min(present) if present else 0.0
        out[stage] = np.asarray([h.scores.get(stage, floor) for h in hits], dtype=np.float64)
    return out


def load_cross_encoder(path: str) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode: a plain HF cross-encoder, or base + LoRA adapter + head merged."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = Path(path).expanduser()
    if (directory / ADAPTER_CONFIG).is_file():
        from peft import PeftModel

        meta = json.loads((directory / RERANKER_META).read_text(encoding="utf-8"))
        base_path = resolve_base_model(meta["base_model"])
        tokenizer = AutoTokenizer.from_pretrained(base_path)
        if meta.get("kind") == "lora-cross-cosine":
            from safetensors.torch import load_file
            from transformers import AutoModel

            from retriever.cross_cosine import HEAD_FILE, CrossCosineModel

            encoder = PeftModel.from_pretrained(AutoModel.from_pretrained(base_path), str(directory)).merge_and_unload()
            model = CrossCosineModel(encoder)
            model.load_head(load_file(str(directory / HEAD_FILE)))
        else:
            base = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1)
            model = PeftModel.from_pretrained(base, str(directory)).merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(directory) if directory.is_dir() else path)
        tokenizer = AutoTokenizer.from_pretrained(str(directory) if directory.is_dir() else path)
    model.eval()
    return model, tokenizer


def resolve_base_model(model_id: str) -> str:
    """The base encoder of a trained adapter: the packaged MiniLM for its id, else the id/path."""
    from retriever.st_embedder import resolve_model_path

    return resolve_model_path(model_id)
