"""``embedder.device``: auto follows what torch sees; an explicit device that is not there is a clear error."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from retriever.config import EmbedderConfig
from retriever.errors import DeviceUnavailable
from retriever.st_embedder import SentenceTransformerEmbedder, resolve_device

HAS_CUDA = torch.cuda.is_available()


def test_auto_is_cuda_when_torch_sees_a_gpu_else_cpu():
    assert resolve_device("auto") == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device("cpu") == "cpu"


def test_the_embedder_runs_where_auto_resolves(embedder):
    """The session's embedder (default config: device auto) holds its weights and gives vectors on that device."""
    expected = "cuda" if HAS_CUDA else "cpu"
    assert embedder.config.device == "auto"
    assert embedder.device == expected
    weights = next(embedder._model.parameters())
    assert weights.device.type == expected
    vec = embedder.embed(["Vitamin D supplementation and bone density."])
    assert vec.shape == (1, embedder.dim) and abs(float((vec**2).sum()) - 1.0) < 1e-3


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_a_clear_error(spec):
    with pytest.raises(DeviceUnavailable) as info:
        SentenceTransformerEmbedder(EmbedderConfig(device=spec)).warm_up()
    err = info.value
    assert spec in err.message and ("CPU-only build" in err.message or "no CUDA GPU" in err.message)
    assert "embedder.device=auto or cpu" in err.hint and "OPENSCHOLAR_EMBEDDER__DEVICE" in err.hint
    assert err.kind == "unavailable" and err.retryable is False


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
def test_a_cuda_index_past_the_last_gpu_is_a_clear_error():
    spec = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(DeviceUnavailable, match="CUDA device"):
        resolve_device(spec)


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "CUDA", "cuda:x", ""])
def test_unknown_device_names_are_refused_by_the_config(spec):
    with pytest.raises(ValidationError, match="device"):
        EmbedderConfig(device=spec)
