"""The ``trained`` judge: the 3-way support judge trained here (``openscholar train judge``).

A LoRA adapter (with its 3-way classification head) over the packaged all-MiniLM-L6-v2, merged
into the base at load time, then read exactly as any NLI model (`NLIJudge`): window by window.
The artifact is a few MB: ``adapter_config.json``, ``adapter_model.safetensors`` and a
``manifest.json`` naming the base model, the labels, the training data and the held-apart
figures. A copy ships in ``openscholar/judges/artifacts/support-3way``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openscholar.judges.nli import JudgeUnavailable, NLIJudge

PACKAGED_JUDGE = Path(__file__).resolve().parent / "artifacts" / "support-3way"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MANIFEST = "manifest.json"
ADAPTER_CONFIG = "adapter_config.json"
LABELS = ("supports", "contradicts", "neither")  # output index -> relation, as trained


def default_judge_path(judge_path: Path | None, cache_dir: Path | None) -> Path:
    """``citations.judge_path``, else one trained here (cache_dir/judge), else the packaged one."""
    if judge_path is not None:
        return Path(judge_path).expanduser()
    if cache_dir is not None and (Path(cache_dir).expanduser() / "judge" / MANIFEST).is_file():
        return Path(cache_dir).expanduser() / "judge"
    return PACKAGED_JUDGE


def load_trained(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, manifest): the base MiniLM with the adapter and head merged in."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from retriever.st_embedder import resolve_model_path

    if not (path / MANIFEST).is_file() or not (path / ADAPTER_CONFIG).is_file():
        raise JudgeUnavailable(
            f"no trained support judge at {path}",
            hint="run `openscholar train judge`, set citations.judge_path, or set citations.judge to 'nli', "
            "'llm' or 'lexical'",
        )
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    labels = list(manifest.get("labels", LABELS))
    base = resolve_model_path(manifest.get("base_model", BASE_MODEL))
    tokenizer = AutoTokenizer.from_pretrained(base)
    # The base checkpoint has no classifier, so transformers logs a "MISSING classifier" load report and
    # peft a FutureWarning; the adapter then supplies the trained head. Neither is news to a user.
    with _quiet_transformers():
        net = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
        net = PeftModel.from_pretrained(net, str(path)).merge_and_unload()
    net.eval()
    return net, tokenizer, manifest


class TrainedJudge(NLIJudge):
    """`NLIJudge` over the artifact at ``path`` (its manifest sets tokens and window size)."""

    name = "trained"

    def __init__(self, path: str | Path, *, windows_per_passage: int | None = 8, batch_size: int = 32) -> None:
        self.path = Path(path)
        manifest_file = self.path / MANIFEST
        meta = json.loads(manifest_file.read_text(encoding="utf-8")) if manifest_file.is_file() else {}
        super().__init__(str(self.path), max_tokens=int(meta.get("max_tokens", 128)), batch_size=batch_size,
                         window_sentences=int(meta.get("window_sentences", 2)), windows_per_passage=windows_per_passage)
        self.manifest: dict[str, Any] = meta
        # The support score at which the held-apart pairs were best separated (chosen on them, never on test).
        self.threshold = float(meta.get("heldout", {}).get("support_threshold", 0.5))

    @classmethod
    def from_config(cls, config: Any, *, cache_dir: Path | None = None, **_: object) -> TrainedJudge:
        """From `CitationConfig` (``judge_path``, ``judge_windows``); ``cache_dir`` holds a judge trained here."""
        return cls(default_judge_path(config.judge_path, cache_dir), windows_per_passage=config.judge_windows)

    def _load(self) -> tuple[Any, Any]:
        net, tokenizer, self.manifest = load_trained(self.path)
        return net, tokenizer


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Transformers' load report and deprecation warnings off while the judge loads."""
    import warnings

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
