"""The Embedder / QueryEncoder contract: what every caller of an encoder relies on.

A backend's test class subclasses `EncoderContract` and provides an ``encoder`` fixture: an
`Encoded` (the object, its ``dim`` and the function under test: ``embed`` for passages,
``encode_queries(...).vectors`` for queries). The shared tests check the shape and dtype, unit norm,
that a text's vector does not depend on the batch it came in (nor on its position there), that
encoding is deterministic, that related texts are closer than unrelated ones, and the empty input
(an empty list gives a (0, dim) array; an empty string is a valid text).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

TEXTS = [
    "Vitamin D supplementation reduced hip fractures in women over seventy.",
    "Graphene oxide membranes sieve ions by size.",
    "Offshore wind farms change the routes of migrating birds, a radar study over three autumns found.",
    "Aspirin",
]
RELATED = ("Does vitamin D prevent fractures in older women?", "Vitamin D and calcium reduced hip fractures among elderly women.")
UNRELATED = "Graphene oxide membranes filter salt ions from seawater."


@dataclass
class Encoded:
    """The encoder under test, the dimension it declares and the function that encodes a list of texts."""

    obj: Any
    dim: int
    encode: Callable[[Sequence[str]], np.ndarray]


class EncoderContract:
    # Cosine a text's vector must keep between a batch and alone (bf16 autocast pads differently).
    batch_cosine = 0.999

    @pytest.fixture
    def encoder(self) -> Encoded:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def test_shape_dtype_and_declared_dim(self, encoder: Encoded) -> None:
        out = encoder.encode(TEXTS)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
        assert out.shape == (len(TEXTS), encoder.dim) and encoder.dim == encoder.obj.dim
        assert isinstance(encoder.obj.model_id, str) and encoder.obj.model_id
        assert np.isfinite(out).all()

    def test_unit_norm(self, encoder: Encoded) -> None:
        norms = np.linalg.norm(encoder.encode(TEXTS), axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-3)

    def test_batch_equals_single(self, encoder: Encoded) -> None:
        batch = encoder.encode(TEXTS)
        for i, text in enumerate(TEXTS):
            alone = encoder.encode([text])[0]
            cos = float(batch[i] @ alone / (np.linalg.norm(batch[i]) * np.linalg.norm(alone)))
            assert cos >= self.batch_cosine, f"text {i} encodes differently in a batch ({cos:.5f})"

    def test_position_in_the_batch_does_not_matter(self, encoder: Encoded) -> None:
        forward, backward = encoder.encode(TEXTS), encoder.encode(list(reversed(TEXTS)))[::-1]
        cos = np.sum(forward * backward, axis=1) / (np.linalg.norm(forward, axis=1) * np.linalg.norm(backward, axis=1))
        assert cos.min() >= self.batch_cosine

    def test_deterministic(self, encoder: Encoded) -> None:
        np.testing.assert_array_equal(encoder.encode(TEXTS), encoder.encode(TEXTS))

    def test_related_closer_than_unrelated(self, encoder: Encoded) -> None:
        q, related, unrelated = encoder.encode([RELATED[0], RELATED[1], UNRELATED])
        assert float(q @ related) > float(q @ unrelated) + 0.1

    def test_empty_list_gives_an_empty_matrix(self, encoder: Encoded) -> None:
        out = encoder.encode([])
        assert out.shape == (0, encoder.dim) and out.dtype == np.float32

    def test_empty_string_is_a_valid_text(self, encoder: Encoded) -> None:
        out = encoder.encode(["", TEXTS[0]])
        assert out.shape == (2, encoder.dim) and np.isfinite(out).all()
        assert abs(float(np.linalg.norm(out[0])) - 1.0) < 1e-3
