"""Queries are pooled and normalized as the datastore's passages were, or the dense retriever refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datastore.config import DatastoreConfig
from datastore.datastore import Datastore
from datastore.errors import EncoderMismatch
from datastore.finalize import finalize
from datastore.manifest import EncoderInfo
from datastore.models import Passage
from datastore.parts import PartWriter, part_name
from retriever.config import DEFAULT_EMBEDDER, EmbedderConfig
from retriever.dense import DenseRetriever
from retriever.st_embedder import SentenceTransformerEmbedder

TEXTS = [
    "Graphene oxide membranes show selective ion transport under an applied electric field.",
    "Vitamin D supplementation in older adults with low bone density: a randomized trial.",
    "Transformer language models trained on scientific text improve citation recommendation.",
]


@pytest.fixture(scope="module")
def unnormalized_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A datastore whose passages were embedded with mean pooling and no normalization (as the release)."""
    emb = SentenceTransformerEmbedder(EmbedderConfig(normalize=False, pooling="mean", precision="fp32"))
    root = tmp_path_factory.mktemp("unnormalized")
    writer = PartWriter(root, part_name(0), emb.dim)
    writer.write([Passage(-1, f"p{i}", "", t) for i, t in enumerate(TEXTS)], emb.embed(TEXTS))
    writer.close()
    info = EncoderInfo(id=DEFAULT_EMBEDDER, dim=emb.dim, normalized=False, pooling="mean", max_tokens=emb.max_tokens)
    finalize(root, info, DatastoreConfig(index="flat"), progress=False)
    return root


def test_query_encoder_must_match_pooling_and_normalization(unnormalized_store: Path) -> None:
    ds = Datastore.open(unnormalized_store)
    with pytest.raises(EncoderMismatch) as err:
        DenseRetriever(ds, SentenceTransformerEmbedder(EmbedderConfig(precision="fp32")))  # normalized queries
    assert "normalized" in err.value.message and "embedder.normalize = false" in err.value.hint
    with pytest.raises(EncoderMismatch) as err:
        DenseRetriever(ds, SentenceTransformerEmbedder(EmbedderConfig(normalize=False, pooling="cls", precision="fp32")))
    assert "cls pooling" in err.value.message and 'embedder.pooling = "mean"' in err.value.hint
    right = SentenceTransformerEmbedder(EmbedderConfig(normalize=False, pooling="mean", precision="fp32"))
    hits = DenseRetriever(ds, right).search("ion transport through graphene membranes", 3)
    assert hits[0].passage.paper_id == "p0"
    # unnormalized: the score is the raw inner product, as the passages were stored
    q = right.encode_queries(["ion transport through graphene membranes"]).vectors[0]
    assert np.linalg.norm(q) > 1.5
    assert hits[0].score == pytest.approx(float(q @ ds.vectors([hits[0].passage.passage_id])[0]), rel=1e-2)


def test_pooling_setting_changes_the_vectors() -> None:
    mean = SentenceTransformerEmbedder(EmbedderConfig(pooling="mean", precision="fp32"))
    cls = SentenceTransformerEmbedder(EmbedderConfig(pooling="cls", precision="fp32"))
    default = SentenceTransformerEmbedder(EmbedderConfig(precision="fp32"))
    assert (mean.pooling, cls.pooling, default.pooling) == ("mean", "cls", "mean")  # MiniLM's own is mean
    vm, vc, vd = (e.encode_queries(TEXTS).vectors for e in (mean, cls, default))
    assert np.allclose(vm, vd, atol=1e-5)
    assert np.max(np.abs(vm - vc)) > 0.05
