"""Attribution judges for scoring citations: any ``SupportJudge`` turned into an entailment test.

ScholarQABench's own judge is ``osunlp/attrscore-flan-t5-xl`` (a seq2seq model that answers
"Attributable", "Extrapolatory" or "Contradictory"); ``AttrScoreJudge`` runs it exactly as the
benchmark's script does, for hosts that have the weights. Offline, the default is the support
judge trained in this project (``openscholar train judge``); ``llm`` and ``lexical`` are the other
``openscholar.judges`` backends. Every report names the judge it used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datastore.errors import ErrorKind, ScholarError

ATTRSCORE_MODEL_ID = "osunlp/attrscore-flan-t5-xl"
# The benchmark's prompt for attrscore (citation_correctness_eval.py), verbatim in meaning.
ATTRSCORE_PROMPT = (
    "As an Attribution Validator, your task is to verify whether a given reference can support the given claim. "
    "A claim can be either a plain sentence or a question followed by its answer. Specifically, your response "
    "should clearly indicate the relationship: Attributable, Contradictory or Extrapolatory. A contradictory error "
    "occurs when you can infer that the answer contradicts the fact presented in the context, while an "
    "extrapolatory error means that you cannot infer the correctness of the answer based on the information "
    "provided in the context. \n\nClaim: {claim}\n Reference: {output}"
)
PROJECT_JUDGES = ("stacked", "trained", "nli", "llm", "lexical")


class JudgeError(ScholarError):
    """The attribution judge cannot be built or loaded."""

    kind: ErrorKind = "invalid_input"


class AttrScoreJudge:
    """The benchmark's attribution model (any HF seq2seq id in the attrscore family); 1.0 = Attributable."""

    def __init__(self, model_id: str = ATTRSCORE_MODEL_ID, device: str | None = None) -> None:
        self.model_id = model_id
        self.name = model_id
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None

    def warm_up(self) -> AttrScoreJudge:
        if self._model is None:
            import torch
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.model_id, use_fast=False)
                self._model = AutoModelForSeq2SeqLM.from_pretrained(self.model_id, torch_dtype=torch.bfloat16)
            except OSError as exc:
                raise JudgeError(
                    f"cannot load the attribution model {self.model_id!r} ({exc.__class__.__name__})",
                    hint="download it on a host with internet access (huggingface-cli download "
                    f"{self.model_id}) or use --judge trained|llm|lexical",
                ) from None
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._model.to(device).eval()
        return self

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        import torch

        self.warm_up()
        out = []
        for claim, passage in pairs:
            text = ATTRSCORE_PROMPT.format_map({"output": passage, "claim": claim})
            ids = self._tokenizer(text, return_tensors="pt").input_ids.to(self._model.device)
            with torch.inference_mode():
                gen = self._model.generate(ids, max_new_tokens=10)
            reply = self._tokenizer.decode(gen[0], skip_special_tokens=True)
            out.append(1.0 if reply == "Attributable" else 0.0)
        return out


def build_attribution_judge(settings: Any, name: str | None = None, *, llm: Any = None) -> Any:
    """The judge named ``name`` (default ``settings.eval.judge``): 'default' (the product's configured
    ``citations.judge``, stacked unless changed), one of PROJECT_JUDGES, or a Hugging Face model id of
    the attrscore family (contains '/')."""
    name = name or getattr(getattr(settings, "eval", None), "judge", None) or "default"
    if name == "default":
        name = settings.citations.judge
    if "/" in name:
        return AttrScoreJudge(name)
    if name not in PROJECT_JUDGES:
        raise JudgeError(
            f"unknown attribution judge {name!r}",
            hint=f"use one of: default, {', '.join(PROJECT_JUDGES)}, or an HF id such as {ATTRSCORE_MODEL_ID}",
        )
    from openscholar.judges import build_judge

    try:
        return build_judge(settings.citations, llm=llm, cache_dir=settings.cache_path, name=name)
    except ImportError as exc:
        raise JudgeError(
            f"the {name!r} attribution judge is not available here ({exc})",
            hint="train it with `openscholar train judge`, or pass --judge llm or --judge lexical",
        ) from None


def judge_id(judge: Any) -> str:
    """A stable description of a judge for reports: its name plus the model behind it, if any."""
    name = str(getattr(judge, "name", type(judge).__name__))
    for attr in ("model_id", "model_path", "path"):
        value = getattr(judge, attr, None)
        if value and str(value) != name:
            return f"{name} ({value})"
    llm = getattr(judge, "_llm", None)
    model = getattr(llm, "model_id", None) if llm is not None and hasattr(llm, "complete") else None
    return f"{name} ({model})" if model else name
