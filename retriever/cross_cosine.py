"""The model of the reranker trained here: a cross-encoder scored by a cosine, so it starts good.

Query and passage are encoded jointly (one sequence, full cross-attention, as in any cross-encoder);
the score is ``scale * cos(mean(query token states), mean(passage token states)) + bias``. Started
from a bi-encoder (the base MiniLM), the untrained model already ranks like that bi-encoder, so a
few minutes of CPU training (LoRA on the top layers, plus scale and bias) refine a good ranker
instead of teaching a randomly initialized classification head from nothing.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

HEAD_FILE = "head.safetensors"


class CrossCosineModel(torch.nn.Module):
    """``encoder`` is a Hugging Face BERT-style model returning ``last_hidden_state``."""

    def __init__(self, encoder: Any, scale: float = 20.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
        self.bias = torch.nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(num_labels=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor, **_: Any) -> SimpleNamespace:
        # The base model only ever saw segment id 0: segments are told apart here, not by the encoder.
        h = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(token_type_ids)
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(h.dtype)
        q_mask = mask * (token_type_ids == 0).unsqueeze(-1).to(h.dtype)
        p_mask = mask * (token_type_ids == 1).unsqueeze(-1).to(h.dtype)
        q = (h * q_mask).sum(1) / q_mask.sum(1).clamp(min=1.0)
        p = (h * p_mask).sum(1) / p_mask.sum(1).clamp(min=1.0)
        score = self.scale * F.cosine_similarity(q, p, dim=-1) + self.bias
        return SimpleNamespace(logits=score.unsqueeze(-1))

    def head_state(self) -> dict[str, torch.Tensor]:
        return {"scale": self.scale.detach().clone().reshape(1), "bias": self.bias.detach().clone().reshape(1)}

    def load_head(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.scale.copy_(state["scale"].reshape(()))
            self.bias.copy_(state["bias"].reshape(()))
