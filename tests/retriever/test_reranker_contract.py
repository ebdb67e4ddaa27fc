"""Every way `CrossEncoderReranker` is configured against the shared reranker contract: the packaged
reranker trained here (LoRA + cosine head) with the shipped settings, alone, and with per-stage
weights; a plain Hugging Face cross-encoder (a tiny one the test builds and saves locally); and an
ensemble of both."""

from __future__ import annotations

from pathlib import Path

import pytest

from openscholar.retrieval import PACKAGED_RERANKER
from retriever.config import RerankerConfig
from retriever.reranker import CrossEncoderReranker, pair_text
from tests.contracts.reranker import QUERY, RELEVANT_ID, RerankerContract, make_hits

needs_artifact = pytest.mark.skipif(
    not (PACKAGED_RERANKER / "adapter_config.json").is_file(), reason="no packaged reranker (run `openscholar train reranker`)"
)


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT cross-encoder (one logit) with the packaged MiniLM's tokenizer, saved as an HF
    directory; a few steps on the contract's candidates make it prefer the relevant one, so the
    contract's relevance test can fail."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from retriever.st_embedder import resolve_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, num_labels=1)
    model = BertForSequenceClassification(config)
    hits = make_hits()
    batch = tokenizer([QUERY] * len(hits), [pair_text(h) for h in hits], return_tensors="pt", padding=True)
    target = torch.tensor([float(h.passage.passage_id == RELEVANT_ID) for h in hits])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(**batch).logits.squeeze(-1), target)
        loss.backward()
        opt.step()
        opt.zero_grad()
    out = tmp_path_factory.mktemp("tiny-cross-encoder")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def packaged() -> CrossEncoderReranker:
    return CrossEncoderReranker(RerankerConfig(), PACKAGED_RERANKER).warm_up()


def _sharing(config: RerankerConfig, loaded: CrossEncoderReranker) -> CrossEncoderReranker:
    """Another configuration of an already loaded reranker (no second load of the same weights)."""
    other = CrossEncoderReranker(config, loaded.model_paths)
    other._members = loaded._members
    return other


@needs_artifact
class TestPackagedReranker(RerankerContract):
    @pytest.fixture
    def reranker(self, packaged: CrossEncoderReranker) -> CrossEncoderReranker:
        return packaged


@needs_artifact
class TestPackagedRerankerAlone(RerankerContract):
    @pytest.fixture
    def reranker(self, packaged: CrossEncoderReranker) -> CrossEncoderReranker:
        return _sharing(RerankerConfig(first_stage_weight=0.0), packaged)


@needs_artifact
class TestPackagedRerankerStageWeights(RerankerContract):
    @pytest.fixture
    def reranker(self, packaged: CrossEncoderReranker) -> CrossEncoderReranker:
        return _sharing(RerankerConfig(first_stage_weight=0.0, stage_weights={"dense": 0.5, "bm25": 0.5}), packaged)


class TestPlainHFCrossEncoder(RerankerContract):
    @pytest.fixture
    def reranker(self, tiny_cross_encoder: Path) -> CrossEncoderReranker:
        return CrossEncoderReranker(RerankerConfig(first_stage_weight=0.0), tiny_cross_encoder)


@needs_artifact
class TestEnsemble(RerankerContract):
    @pytest.fixture
    def reranker(self, tiny_cross_encoder: Path) -> CrossEncoderReranker:
        return CrossEncoderReranker(RerankerConfig(), [PACKAGED_RERANKER, tiny_cross_encoder])
