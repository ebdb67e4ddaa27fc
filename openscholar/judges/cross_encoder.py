"""The support judge trained here: the packaged MiniLM as a cross-encoder (LoRA + linear head).

Input is ``[CLS] statement [SEP] evidence window [SEP]`` (a window = two consecutive sentences of
the passage); a passage's support score is the max over its windows most word-similar to the
statement.
The artifact is small (LoRA adapter + head, a few MB) with a manifest naming the base model, how it
was trained and its held-out accuracy. ``openscholar train judge`` writes one; a copy ships in
``openscholar/judges/artifacts/support-minilm``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datastore.errors import ErrorKind, ScholarError
from openscholar.config import CitationConfig
from openscholar.judges.windows import best_windows

PACKAGED_JUDGE = Path(__file__).resolve().parent / "artifacts" / "support-minilm"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MANIFEST = "manifest.json"


class JudgeNotTrained(ScholarError):
    kind: ErrorKind = "unavailable"


def build_support_model(base_path: str) -> Any:
    """The base encoder plus a fresh 1-logit head over mean-pooled tokens (a torch Module)."""
    import torch
    from transformers import AutoModel

    class SupportModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(base_path)
            self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled).squeeze(-1)

    return SupportModel()


def default_judge_path(config: CitationConfig, cache_dir: Path | None = None) -> Path:
    """Configured path, else one trained here by `train judge` (cache_dir/judge), else the packaged one."""
    if config.judge_path is not None:
        return Path(config.judge_path).expanduser()
    local = cache_dir / "judge" if cache_dir is not None else None
    if local is not None and ((local / MANIFEST).is_file() or not (PACKAGED_JUDGE / MANIFEST).is_file()):
        return local
    return PACKAGED_JUDGE


class CrossEncoderJudge:
    """Loads lazily, once; thread-safe scoring in batches."""

    name = "trained"

    def __init__(self, path: str | Path, *, batch_size: int = 32, max_tokens: int | None = None,
                 windows_per_passage: int = 2) -> None:
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            raise JudgeNotTrained(
                f"no trained support judge at {self.path}",
                hint="run `openscholar train judge`, set citations.judge_path, or set citations.judge to 'llm' "
                "or 'lexical'",
            )
        self.manifest: dict[str, Any] = json.loads(manifest.read_text())
        self.batch_size = batch_size
        self.windows_per_passage = windows_per_passage
        self.max_tokens = int(max_tokens or self.manifest.get("max_tokens", 256))
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: CitationConfig, *, cache_dir: Path | None = None, **_: object) -> CrossEncoderJudge:
        """The judge at ``citations.judge_path``, else one trained here (cache_dir/judge), else the packaged one."""
        return cls(default_judge_path(config, cache_dir))

    def warm_up(self) -> CrossEncoderJudge:
        with self._lock:
            if self._model is None:
                self._tokenizer, self._model = load_judge(self.path, self.manifest)
        return self

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Max over the passage's best ``windows_per_passage`` windows (by word overlap) of P(support)."""
        import torch

        if not pairs:
            return []
        self.warm_up()
        size = int(self.manifest.get("window_sentences", 2))
        flat: list[tuple[str, str]] = []
        owner: list[int] = []
        for n, (statement, passage) in enumerate(pairs):
            body = passage.split("\n", 1)[1] if "\n" in passage else passage
            for window in best_windows(statement, body, n=self.windows_per_passage, size=size) or [body]:
                flat.append((statement, window))
                owner.append(n)
        probs: list[float] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(flat), self.batch_size):
                batch = flat[start:start + self.batch_size]
                enc = self._tokenizer([a for a, _ in batch], [b for _, b in batch], truncation="only_second",
                                      max_length=self.max_tokens, padding=True, return_tensors="pt")
                probs.extend(torch.sigmoid(self._model(**enc)).tolist())
        best = [0.0] * len(pairs)
        for n, p in zip(owner, probs, strict=True):
            best[n] = max(best[n], float(p))
        return best


def load_judge(path: Path, manifest: dict[str, Any]) -> tuple[Any, Any]:
    """(tokenizer, model) with the LoRA adapter merged into the base for fast inference."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from retriever.st_embedder import resolve_model_path

    base = resolve_model_path(manifest.get("base_model", BASE_MODEL))
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = build_support_model(base)
    model.encoder = PeftModel.from_pretrained(model.encoder, str(path / "adapter")).merge_and_unload()
    model.head.load_state_dict(load_file(str(path / "head.safetensors")))
    model.eval()
    model.to(torch.float32)
    return tokenizer, model
