"""The packaged all-MiniLM-L6-v2 `SentenceTransformerEmbedder` against the shared encoder contract,
on both of its sides: passages (``embed``) and queries (``encode_queries``)."""

from __future__ import annotations

import pytest

from retriever.protocols import Embedder, QueryEncoder
from retriever.st_embedder import SentenceTransformerEmbedder
from tests.contracts.encoder import Encoded, EncoderContract


class TestSentenceTransformerPassages(EncoderContract):
    @pytest.fixture
    def encoder(self, embedder: SentenceTransformerEmbedder) -> Encoded:
        assert isinstance(embedder, Embedder)
        return Encoded(embedder, 384, embedder.embed)


class TestSentenceTransformerQueries(EncoderContract):
    @pytest.fixture
    def encoder(self, embedder: SentenceTransformerEmbedder) -> Encoded:
        assert isinstance(embedder, QueryEncoder)
        return Encoded(embedder, 384, lambda texts: embedder.encode_queries(texts).vectors)
