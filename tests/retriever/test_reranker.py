"""The reranker: protocol contract, the trained default beats no reranking on held-out claims,
training writes a loadable adapter with a manifest, and the shipped manifest proves no test data."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from datastore.datastore import Datastore
from datastore.models import Passage
from eval.beir import documents_of, ndcg_at
from openscholar.retrieval import PACKAGED_RERANKER
from retriever.config import RerankerConfig, RetrievalConfig, SparseConfig
from retriever.dense import DenseRetriever
from retriever.errors import ModelUnavailable
from retriever.fusion import Fusion
from retriever.protocols import Hit
from retriever.reranker import CrossEncoderReranker, Reranker, stage_features
from retriever.sparse import open_sparse
from retriever.train_reranker import (
    Group,
    LegacyRerankerTraining,
    RerankerTrainConfig,
    RerankerTraining,
    corpus_pseudo_groups,
    held_out_queries,
    read_manifest,
    save_reranker,
    train_cross_encoder,
)
from tests.conftest import SCIFACT, read_qrels

needs_artifact = pytest.mark.skipif(
    not (PACKAGED_RERANKER / "adapter_config.json").is_file(), reason="no packaged reranker (run `openscholar train reranker`)"
)


@pytest.fixture(scope="module")
def reranker() -> CrossEncoderReranker:
    return CrossEncoderReranker(RerankerConfig(), PACKAGED_RERANKER).warm_up()


def _hit(pid: int, title: str, text: str, score: float) -> Hit:
    return Hit(Passage(pid, f"p{pid}", title, text), score, {"fusion": score})


@needs_artifact
def test_rerank_contract(reranker: CrossEncoderReranker) -> None:
    assert isinstance(reranker, Reranker)
    # Equal first-stage scores: the order can only come from the reranker.
    hits = [
        _hit(1, "Wind turbines", "Offshore wind farms change local bird migration routes.", 0.5),
        _hit(2, "Vitamin D and bone", "Vitamin D supplementation reduced fracture risk in older women.", 0.5),
        _hit(3, "Graphene", "Graphene oxide membranes filter ions.", 0.5),
    ]
    out = reranker.rerank("Vitamin D supplements prevent fractures in elderly women.", hits)
    assert sorted(h.passage.passage_id for h in out) == [1, 2, 3]
    assert out[0].passage.passage_id == 2  # the only relevant passage moves up from last
    assert [h.score for h in out] == sorted((h.score for h in out), reverse=True)
    assert all("rerank" in h.scores and h.scores["fusion"] == 0.5 for h in out)
    assert [h.scores["rerank"] for h in out] == sorted((h.scores["rerank"] for h in out), reverse=True)
    assert [h.passage.passage_id for h in reranker.rerank("vitamin D fractures", hits, k=1)] == [2]
    assert reranker.rerank("anything", []) == []


def test_stage_features_floor_missing_stages() -> None:
    hits = [
        Hit(Passage(1, "p1", "", "a"), 3.0, {"dense": 0.8, "bm25": 12.0, "fusion": 3.0}),
        Hit(Passage(2, "p2", "", "b"), 2.0, {"dense": 0.6, "fusion": 2.0}),  # BM25 did not return it
        Hit(Passage(3, "p3", "", "c"), 1.0, {"bm25": 7.0, "fusion": 1.0}),  # dense did not return it
    ]
    f = stage_features(hits, ["dense", "bm25"])
    assert f["dense"].tolist() == [0.8, 0.6, 0.6]
    assert f["bm25"].tolist() == [12.0, 7.0, 7.0]
    assert stage_features(hits, ["router"])["router"].tolist() == [0.0, 0.0, 0.0]


@needs_artifact
def test_stage_weights_add_first_stage_evidence(reranker: CrossEncoderReranker) -> None:
    """With a heavy dense weight the dense order wins over the cross-encoder; with none it does not."""
    query = "Vitamin D supplements prevent fractures in elderly women."
    texts = ["Vitamin D supplementation reduced fracture risk in older women.", "Offshore wind farms change bird migration."]
    hits = [
        Hit(Passage(i + 1, f"p{i + 1}", "", t), 1.0, {"fusion": 1.0, "dense": d})
        for i, (t, d) in enumerate(zip(texts, [0.1, 0.9], strict=True))
    ]
    plain = CrossEncoderReranker(RerankerConfig(first_stage_weight=0.0), PACKAGED_RERANKER)
    plain._members = reranker._load()
    assert plain.rerank(query, hits)[0].passage.passage_id == 1
    dense_heavy = CrossEncoderReranker(RerankerConfig(first_stage_weight=0.0, stage_weights={"dense": 5.0}), PACKAGED_RERANKER)
    dense_heavy._members = plain._members
    out = dense_heavy.rerank(query, hits)
    assert out[0].passage.passage_id == 2
    assert out[0].scores["rerank"] < out[1].scores["rerank"]  # the logit is kept, only the order moved


def test_stage_weights_refuse_unknown_stages() -> None:
    with pytest.raises(ValueError, match="stage_weights"):
        RerankerConfig(stage_weights={"colbert": 1.0})
    with pytest.raises(ValueError, match="stage_weights"):
        RerankerConfig(stage_weights={"dense": -1.0})


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable) as exc:
        CrossEncoderReranker(RerankerConfig(), tmp_path / "nothing-here").warm_up()
    assert "openscholar train reranker" in exc.value.hint


@needs_artifact
def test_reranker_beats_no_reranking_on_held_out_claims(small_datastore: Path, embedder, scifact_subset: dict, reranker: CrossEncoderReranker) -> None:
    """The 40 claims of the fixture are train claims the reranker never saw (held out as dev)."""
    manifest = json.loads((PACKAGED_RERANKER / "manifest.json").read_text())
    assert set(scifact_subset["claims"]) <= set(manifest["held_out_dev_query_ids"])
    ds = Datastore.open(small_datastore)
    claims = list(scifact_subset["claims"].items())
    texts = [c for _, c in claims]
    # First stages in one batch (cheap), then the hybrid ranking with and without reranking its top
    # `candidates` (the shipped settings: window and first-stage weight).
    window = reranker.config.candidates
    dense = DenseRetriever(ds, embedder).search_batch(texts, 50)
    sparse = open_sparse(ds, RetrievalConfig().sparse).search_batch(texts, 50)
    qrels = scifact_subset["qrels"]
    base, rr = [], []
    for (qid, claim), d, s in zip(claims, dense, sparse, strict=True):
        fused = Fusion().fuse(d, s)
        reranked = reranker.rerank(claim, fused[:window]) + fused[window:]
        assert {h.passage.passage_id for h in reranked[:window]} == {h.passage.passage_id for h in fused[:window]}
        base.append(ndcg_at(documents_of(fused), qrels[qid]))
        rr.append(ndcg_at(documents_of(reranked), qrels[qid]))
    print(f"hybrid {sum(base) / len(base):.4f} -> reranked {sum(rr) / len(rr):.4f} on {len(rr)} held-out claims")
    assert sum(rr) / len(rr) > sum(base) / len(base)


def test_training_writes_a_loadable_adapter_and_manifest(tmp_path: Path) -> None:
    rng = random.Random(0)
    topics = ["vitamin D fractures", "graphene ion sieving", "malaria vaccine efficacy", "bird migration wind farms"]
    groups = [
        Group(f"q{i}", "toy", f"claim about {t}", f"A study of {t}.", [f"A study of {topics[(i + 1) % 4]}."])
        for i, t in enumerate(topics)
    ]
    cfg = RerankerTrainConfig(max_tokens=32, negatives=1, queries_per_step=2, dev_queries=0, seed=rng.randint(0, 9))
    out = tmp_path / "rr"
    trained = train_cross_encoder(groups, cfg, progress=False)
    assert not out.exists(), "training alone writes nothing"
    manifest = save_reranker(out, trained, cfg, groups, [], [], total_seconds=1.5)
    training = manifest.training
    assert isinstance(training, RerankerTraining) and training.steps == 2 and manifest.pairs == 8
    assert training.stop_reason == "planned" and training.max_grad_norm == 1.0 and training.total_seconds == 1.5
    assert training.learning_rates == [cfg.lr, cfg.head_lr] and len(training.loss_curve) == 2
    from retriever.st_embedder import cpu_has_native_bf16

    assert training.bf16_autocast is bool(cpu_has_native_bf16())  # precision auto follows the CPU
    assert manifest.query_ids_by_source == {"toy": ["q0", "q1", "q2", "q3"]}
    assert read_manifest(out) == manifest  # the typed manifest round-trips through the file
    assert sorted(manifest.artifact_sha256) == sorted(p.name for p in out.iterdir() if p.name != "manifest.json")
    assert not list(tmp_path.glob(".rr.*")), "no partial directory left behind"
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == cfg.base_model
    scores = CrossEncoderReranker(RerankerConfig(), out).score("claim about graphene", ["A study of graphene.", "x"])
    assert scores.shape == (2,) and all(abs(s) < 1e3 for s in scores)


def test_corpus_pseudo_queries_hide_their_sentence_and_read_no_qrels(scifact_subset: dict, small_datastore: Path) -> None:
    """An abstract's last sentence is the query; the positive is the rest (never the sentence itself);
    negatives come from other papers; only corpus.jsonl is read."""
    beir = Path(scifact_subset["dir"])
    sparse = open_sparse(Datastore.open(small_datastore), SparseConfig())
    groups, record = corpus_pseudo_groups(beir, [sparse.search_batch], RerankerTrainConfig(negatives=2), random.Random(0), 12)
    assert 8 <= len(groups) <= 12
    assert list(record.files) == [str(beir / "corpus.jsonl")]
    docs = {json.loads(x)["_id"]: json.loads(x) for x in (beir / "corpus.jsonl").read_text().splitlines() if x.strip()}
    for g in groups:
        pid = g.qid.removeprefix("corpus:")
        doc = docs[pid]
        assert g.source == "corpus-pseudo" and g.query in doc["text"] and doc["text"].rstrip().endswith(g.query)
        assert g.query not in g.positive and g.positive.startswith(doc["title"])
        assert len(g.negatives) == 2 and all(not n.startswith(doc["title"] + ".") for n in g.negatives)
    again, _ = corpus_pseudo_groups(beir, [sparse.search_batch], RerankerTrainConfig(negatives=2), random.Random(0), 12)
    assert [(g.qid, g.negatives) for g in again] == [(g.qid, g.negatives) for g in groups]  # seeded


def test_reranker_precision_follows_the_cpu() -> None:
    from retriever.st_embedder import cpu_has_native_bf16

    assert CrossEncoderReranker(RerankerConfig(precision="fp32")).uses_bf16 is False
    assert CrossEncoderReranker(RerankerConfig(precision="bf16")).uses_bf16 is True
    assert CrossEncoderReranker(RerankerConfig()).uses_bf16 is bool(cpu_has_native_bf16())


@needs_artifact
def test_shipped_manifest_proves_no_test_data() -> None:
    manifest = json.loads((PACKAGED_RERANKER / "manifest.json").read_text())
    test_qrels = read_qrels(SCIFACT / "qrels" / "test.tsv")
    train_qrels = read_qrels(SCIFACT / "qrels" / "train.tsv")
    test_hash = hashlib.sha256((SCIFACT / "qrels" / "test.tsv").read_bytes()).hexdigest()
    hashes = {h for rec in manifest["inputs"] for h in rec["files"].values()}
    paths = [p for rec in manifest["inputs"] for p in rec["files"]]
    assert test_hash not in hashes
    assert not any(p.endswith("test.tsv") or "scifact_test" in p for p in paths)
    train_hash = hashlib.sha256((SCIFACT / "qrels" / "train.tsv").read_bytes()).hexdigest()
    assert train_hash in hashes
    used = {q for ids in manifest["query_ids_by_source"].values() for q in ids}
    # Corpus pseudo-queries are named by their corpus paper; they read corpus.jsonl, no qrels.
    assert all(q.startswith("corpus:") for q in manifest["query_ids_by_source"].get("corpus-pseudo", []))
    beir_ids = set(manifest["query_ids_by_source"]["beir-train"])
    assert beir_ids and beir_ids <= set(train_qrels)
    assert not used & set(test_qrels)
    assert not beir_ids & set(manifest["held_out_dev_query_ids"])
    assert manifest["held_out_dev_query_ids"] == held_out_queries(list(train_qrels), manifest["config"]["dev_queries"])
    for name, digest in manifest["artifact_sha256"].items():
        assert hashlib.sha256((PACKAGED_RERANKER / name).read_bytes()).hexdigest() == digest
    typed = read_manifest(PACKAGED_RERANKER)  # trained before the shared loop: the legacy record
    assert isinstance(typed.training, LegacyRerankerTraining) and typed.training.steps == manifest["training"]["steps"]


def test_reranker_names_resolve_to_packaged_directories(tmp_path: Path) -> None:
    from openscholar.retrieval import PACKAGED_MODELS, reranker_path, reranker_paths
    from openscholar.settings import Settings

    settings = Settings(cache_dir=tmp_path)  # an empty cache: 'default' is the packaged reranker
    if (PACKAGED_RERANKER / "adapter_config.json").is_file():
        assert reranker_path(settings) == str(PACKAGED_RERANKER)
        assert reranker_path(settings, "reranker") == str(PACKAGED_MODELS / "reranker")
    assert reranker_path(settings, "cross-encoder/ms-marco-MiniLM-L-6-v2") == "cross-encoder/ms-marco-MiniLM-L-6-v2"
    assert reranker_path(settings, "no-such-packaged-name") == "no-such-packaged-name"  # then loading says what to do
    settings.retrieval.reranker.extra_models = ["cross-encoder/ms-marco-MiniLM-L-6-v2"]
    assert reranker_paths(settings)[1:] == ["cross-encoder/ms-marco-MiniLM-L-6-v2"]


@needs_artifact
def test_an_ensemble_sums_its_members_z_scored_logits(reranker: CrossEncoderReranker) -> None:
    ensemble = CrossEncoderReranker(RerankerConfig(), [PACKAGED_RERANKER, PACKAGED_RERANKER]).warm_up()
    assert len(ensemble._members) == 2
    query = "Vitamin D supplements prevent fractures in elderly women."
    texts = ["Vitamin D supplementation reduced fracture risk in older women.", "Offshore wind farms change bird migration.",
             "Calcium intake and hip fracture incidence in a cohort of 60,000 women."]
    single = reranker.score(query, texts).astype(float)  # the one member, loaded by the fixture
    expected = 2 * (single - single.mean()) / single.std()
    assert np.allclose(ensemble.score(query, texts), expected, atol=1e-4)
    assert ensemble.rerank(query, [_hit(i, "", t, 1.0) for i, t in enumerate(texts)])[0].passage.passage_id == 0
    with pytest.raises(ModelUnavailable):  # a missing member fails the whole ensemble, before any load
        CrossEncoderReranker(RerankerConfig(), [Path("/nonexistent/reranker"), PACKAGED_RERANKER]).warm_up()
