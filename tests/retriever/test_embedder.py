"""SentenceTransformerEmbedder on real SciFact passages: faithful to fp32, normalized, batch-independent."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retriever.config import EmbedderConfig
from retriever.st_embedder import SentenceTransformerEmbedder, min_cosine, resolve_model_path
from tests.conftest import SCIFACT


@pytest.fixture(scope="module")
def passages(shared_data) -> list[str]:
    """Four real SciFact passages (title + abstract), long ones included: drift grows with length."""
    out = []
    with (SCIFACT / "corpus.jsonl").open() as fh:
        for line in fh:
            d = json.loads(line)
            out.append(f"{d['title']} {d['text']}".strip())
            if len(out) == 4:
                break
    return out


@pytest.fixture(scope="module")
def plain_fp32(embedder):
    """Plain sentence-transformers in fp32: the reference our speedups must match."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model_path(embedder.config.model), device="cpu")
    model.max_seq_length = embedder.max_tokens + 2
    return model


@pytest.fixture(scope="module")
def prefixed(embedder) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(
        EmbedderConfig(query_prefix="query: ", passage_prefix="passage: ", compile_after=None)
    ).warm_up()


def test_passages_match_plain_fp32(embedder, plain_fp32, passages):
    ours = embedder.embed(passages)
    ref = plain_fp32.encode(passages, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.dtype == np.float32 and ours.shape == (len(passages), 384)
    assert min_cosine(ours, ref) >= 0.999
    # row i is passage i: the length sort inside is undone
    sims = ours @ ref.T
    assert (np.argmax(sims, axis=1) == np.arange(len(passages))).all()


def test_bf16_decision_follows_the_probe(embedder):
    fp32 = SentenceTransformerEmbedder(EmbedderConfig(precision="fp32"))
    fp32._model, fp32._dim, fp32._max_tokens = embedder._model, embedder.dim, embedder.max_tokens
    assert fp32.uses_bf16 is False
    texts = ["Vitamin D deficiency is associated with fractures in older adults."]
    assert min_cosine(fp32.embed(texts), embedder.embed(texts)) >= 0.999
    if embedder.uses_bf16:  # auto chose bf16: it must be faithful on this machine
        assert min_cosine(embedder._encode(texts, bf16=True), embedder._encode(texts, bf16=False)) >= 0.999
    # ... and never on a CPU that would emulate it (AVX2-only: ~20x slower than fp32)
    from retriever.st_embedder import cpu_has_native_bf16

    if cpu_has_native_bf16() is False:
        assert embedder.uses_bf16 is False


def test_vectors_are_normalized(embedder, passages):
    vecs = embedder.embed(passages[:1] + ["short query-like text"])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    q = embedder.encode_queries(["does aspirin prevent stroke?"]).vectors
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-4)


def test_batching_does_not_change_vectors(embedder, passages):
    together = embedder.embed(passages)
    alone = np.vstack([embedder.embed([p]) for p in passages[:2]])
    reordered = embedder.embed(passages[::-1])[::-1]
    assert min_cosine(together[:2], alone) >= 0.9999
    assert min_cosine(together, reordered) >= 0.9999
    small = SentenceTransformerEmbedder(EmbedderConfig(batch_size=2, compile_after=None))
    small._model, small._dim, small._max_tokens, small._bf16 = (
        embedder._model, embedder.dim, embedder.max_tokens, embedder.uses_bf16)
    assert min_cosine(small.embed(passages), together) >= 0.9999


def test_count_tokens_matches_tokenizer_and_budget(embedder, prefixed, passages):
    tok = embedder._model.tokenizer
    counts = embedder.count_tokens(passages[:2] + ["", "cells"])
    expected = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in passages[:2] + ["", "cells"]]
    assert counts == expected and counts[2] == 0 and counts[3] >= 1
    assert embedder.count_tokens([]) == []
    # the passage prefix is part of what the encoder pays for
    assert prefixed.count_tokens(["cells"])[0] == len(tok("passage: cells", add_special_tokens=False)["input_ids"])
    assert embedder.max_tokens == 254


def test_query_and_passage_prefixes(embedder, prefixed):
    text = "Microglia clear amyloid plaques in mouse models of Alzheimer's disease."
    q = prefixed.encode_queries([text]).vectors
    p = prefixed.embed([text])
    assert min_cosine(q, embedder.embed(["query: " + text])) >= 0.9999
    assert min_cosine(p, embedder.embed(["passage: " + text])) >= 0.9999
    assert min_cosine(q, p) < 0.9999  # the two prefixes really change the vectors
    assert prefixed.encode_queries([]).vectors.shape == (0, 384)
    assert prefixed.embed([]).shape == (0, 384)


def test_compile_waits_for_bulk_work(embedder, prefixed, passages):
    # queries and small jobs never trigger a compile; the default waits for a build-sized job
    assert EmbedderConfig().compile_after == 4096
    fresh = SentenceTransformerEmbedder(EmbedderConfig(compile_after=len(passages) + 1))
    fresh._model, fresh._dim, fresh._max_tokens, fresh._bf16 = (
        embedder._model, embedder.dim, embedder.max_tokens, embedder.uses_bf16)
    fresh.encode_queries(passages)
    fresh.embed(passages)
    assert fresh._embedded == len(passages) and fresh._compiled is None and not fresh.uses_compile
    assert not prefixed.uses_compile and prefixed._compiled is None


@pytest.mark.slow
def test_compiled_encoder_matches_fp32(embedder, plain_fp32, passages):
    fast = SentenceTransformerEmbedder(EmbedderConfig(compile_after=0))
    fast._model, fast._dim, fast._max_tokens, fast._bf16 = (
        embedder._model, embedder.dim, embedder.max_tokens, embedder.uses_bf16)
    got = fast.embed(passages)
    assert fast.compile_report.get("min_cosine_to_fp32", 0) >= 0.999, fast.compile_report
    assert fast.uses_compile, fast.compile_report
    ref = plain_fp32.encode(passages, normalize_embeddings=True, convert_to_numpy=True)
    assert min_cosine(got, ref) >= 0.999
    # other batch shapes reuse the dynamic-shape graph and stay faithful
    assert min_cosine(fast.embed(passages[:1]), ref[:1]) >= 0.999
