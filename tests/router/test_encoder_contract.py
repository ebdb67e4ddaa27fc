"""The router's query encoder (the packaged experts, routed by the packaged routing head, built as the
product builds it) against the shared encoder contract, plus what a routing encoder adds: one
`Routing` per query, and the same expert for a query alone or in a batch."""

from __future__ import annotations

import pytest

from retriever.config import EmbedderConfig
from retriever.protocols import QueryEncoder
from retriever.st_embedder import SentenceTransformerEmbedder
from router.config import PACKAGED_EXPERTS, RouterConfig
from router.encoder import RouterQueryEncoder
from router.factory import build_router_encoder
from tests.contracts.encoder import TEXTS, Encoded, EncoderContract

needs_experts = pytest.mark.skipif(not (PACKAGED_EXPERTS / "pilots.json").is_file(), reason="no packaged experts")


@pytest.fixture(scope="module")
def router_encoder(embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory) -> RouterQueryEncoder:
    return build_router_encoder(RouterConfig(), EmbedderConfig(), tmp_path_factory.mktemp("cache"), embedder).warm_up()


@needs_experts
class TestRouterQueryEncoder(EncoderContract):
    @pytest.fixture
    def encoder(self, router_encoder: RouterQueryEncoder) -> Encoded:
        assert isinstance(router_encoder, QueryEncoder)
        return Encoded(router_encoder, 384, lambda texts: router_encoder.encode_queries(texts).vectors)

    def test_one_routing_per_query_batch_or_alone(self, router_encoder: RouterQueryEncoder) -> None:
        out = router_encoder.encode_queries(TEXTS)
        assert out.routing is not None and len(out.routing) == len(TEXTS)
        assert {r.expert for r in out.routing} <= set(router_encoder.expert_names)
        for text, routing in zip(TEXTS, out.routing, strict=True):
            alone = router_encoder.encode_queries([text]).routing
            assert alone is not None and alone[0].expert == routing.expert and alone[0].rule == routing.rule == "head"
        assert router_encoder.encode_queries([]).routing == []
