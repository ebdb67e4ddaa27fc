"""RouterRetriever on the real base encoder, a real small datastore and real FAISS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datastore.datastore import Datastore
from retriever.dense import DenseRetriever
from retriever.protocols import QueryEncoder
from router.encoder import RouterQueryEncoder
from router.errors import RouterError
from router.experts import ExpertStore, pairs_hash
from router.pilots import Pilots, add_expert_pilots, compute_pilots, remove_expert_pilots
from tests.router.conftest import make_expert, pilots_table


def test_algorithm1_and_routing_pick_the_planted_experts(planted: ExpertStore, backbone, corpus, domains) -> None:
    pilots = compute_pilots(backbone, planted.experts(), corpus.vectors, corpus.lookup, k=10)
    table = pilots_table(pilots)
    # The wrecked expert serves no query best: Algorithm 1 gives it no pilot even for its own domain,
    # whose queries go to the (tied) identity experts, first name first.
    assert pilots.of("broken") == []
    assert ("broken", "claims") in table and ("claims", "claims") in table and ("cs", "cs") in table
    assert table[("claims", "claims")][0] > 20
    pilots.save(planted.root)

    # The finest pilots (every grouped query's base vector) survive the file round trip (fp16).
    loaded = Pilots.load(planted.root)
    for e, f in zip(sorted(pilots.entries, key=lambda e: (e.source, e.expert)), loaded.entries, strict=True):
        assert f.members is not None and f.members.shape == (e.count, backbone.dim)
        np.testing.assert_allclose(f.members, e.members, atol=2e-3)

    for weighting in ("count", "uniform", "nearest", "knn"):
        enc = RouterQueryEncoder(backbone, planted.root, weighting=weighting, knn=5)
        assert enc.expert_names == ["claims", "cs"]
        for domain in ("claims", "cs"):
            held = list(dict.fromkeys(p.query for p in domains[domain]["held_out"]))
            assert len(held) >= 5
            qv = enc.encode_queries(held)
            picked = [r.expert for r in qv.routing]
            slack = 3 if weighting == "knn" else 1  # a few nearest neighbours are noisier than centroids
            assert picked.count(domain) >= len(held) - slack, (weighting, domain, picked)
            for d in qv.routing:
                assert set(d.similarities) == {"claims", "cs"}
                assert d.expert == max(d.similarities, key=d.similarities.get)


def test_add_and_remove_change_only_that_experts_pilots(planted: ExpertStore, backbone, corpus, domains) -> None:
    store = ExpertStore(planted.root)
    two = [store.get("claims"), store.get("cs")]
    before = compute_pilots(backbone, two, corpus.vectors, corpus.lookup)
    # Add a planted bad expert, then a good one over the cs domain's pilot set.
    added = add_expert_pilots(before, backbone, store.get("broken"), two, corpus.vectors, corpus.lookup)
    b, a = pilots_table(before), pilots_table(added)
    for key, (count, vec) in b.items():
        assert a[key][0] == count and np.array_equal(a[key][1], vec)
    new_keys = set(a) - set(b)
    assert new_keys and all(src == "broken" for src, _ in new_keys)
    assert all(exp != "broken" for _, exp in new_keys)  # it serves none of its own queries best

    make_expert(store, backbone, "cs2", domains["cs"]["pilot"])
    with_cs2 = add_expert_pilots(added, backbone, store.get("cs2"), [*two, store.get("broken")], corpus.vectors, corpus.lookup)
    assert ("cs2", "cs2") in pilots_table(with_cs2)  # its own domain ties -> its own pilot

    removed = remove_expert_pilots(with_cs2, "cs")
    r = pilots_table(removed)
    assert all("cs" not in key for key in r)
    kept = {k: v for k, v in pilots_table(with_cs2).items() if "cs" not in k}
    assert set(r) == set(kept)
    for key, (count, vec) in kept.items():
        assert r[key][0] == count and np.array_equal(r[key][1], vec)
    # On disk too: save/load keeps the table exactly.
    removed.save(store.root)
    loaded = pilots_table(Pilots.load(store.root))
    assert set(loaded) == set(r)
    assert all(np.array_equal(loaded[k][1], r[k][1]) for k in r)


def test_pilots_are_reproducible_from_the_manifests(planted: ExpertStore, backbone, corpus, domains) -> None:
    experts = planted.experts()
    first = compute_pilots(backbone, experts, corpus.vectors, corpus.lookup)
    again = compute_pilots(backbone, ExpertStore(planted.root).experts(), corpus.vectors, corpus.lookup)
    one, two = pilots_table(first), pilots_table(again)
    assert set(one) == set(two)
    for key in one:
        assert one[key][0] == two[key][0]
        np.testing.assert_allclose(one[key][1], two[key][1], atol=1e-6)
    assert first.expert_hashes == {e.name: e.manifest.pilot_set_hash for e in experts}
    # The manifest names the data: a pilot set that no longer matches its hash is refused.
    claims = planted.get("claims")
    assert claims.manifest.training.data_hash == pairs_hash(domains["claims"]["pilot"])
    path = claims.root / "pilot_set.jsonl"
    path.write_text(path.read_text().replace("a", "b", 1))
    with pytest.raises(RouterError, match="does not match the hash"):
        compute_pilots(backbone, ExpertStore(planted.root).experts(), corpus.vectors, corpus.lookup)


def test_passage_vectors_identical_with_and_without_router(
    planted: ExpertStore, embedder, backbone, corpus, small_datastore: Path, scifact_subset
) -> None:
    ds = Datastore.open(small_datastore)
    passages = list(ds.iter_passages())[:24]
    ids = [p.passage_id for p in passages]
    texts = [p.embed_text for p in passages]
    before = embedder.embed(texts)
    stored_before = ds.vectors(list(range(ds.manifest.passages)))
    compute_pilots(backbone, planted.experts(), corpus.vectors, corpus.lookup).save(planted.root)
    enc = RouterQueryEncoder(backbone, planted.root, bf16=embedder.uses_bf16).warm_up()
    assert isinstance(enc, QueryEncoder)
    assert (enc.model_id, enc.dim) == (ds.encoder_id, ds.dim)  # searches the base's datastore
    claims = list(scifact_subset["claims"].values())[:8]
    hits, routing = DenseRetriever(ds, enc).search_batch_routed(claims, k=5)
    assert routing is not None and all(r.expert in ("claims", "cs") for r in routing)
    assert all(len(h) == 5 for h in hits)
    after = embedder.embed(texts)
    assert np.array_equal(before, after)  # loading/merging adapters left the base untouched
    stored_after = Datastore.open(small_datastore).vectors(list(range(ds.manifest.passages)))
    assert np.array_equal(stored_before, stored_after)  # the datastore's passage side is untouched
    cos = np.sum(ds.vectors(ids) * after, axis=1)
    assert float(cos.min()) > 0.999  # and it is the base embedder's passage vectors
    # Only the query side moves: a wrecked expert's query vectors differ, the base's do not.
    q_base = backbone.encode(claims)
    np.testing.assert_allclose(RouterQueryEncoder(backbone, planted.root).encode_with("claims", claims), q_base, atol=1e-5)
    q_broken = backbone.encode_with(backbone.merged_expert(planted.get("broken").adapter_dir), claims)
    assert float(np.min(np.sum(q_broken * q_base, axis=1))) < 0.9
    np.testing.assert_allclose(backbone.encode(claims), q_base, atol=1e-6)


def test_pilot_weighting_count_vs_uniform(planted: ExpertStore, backbone) -> None:
    from router.pilots import PilotEntry

    e1, e2 = np.zeros(384, np.float32), np.zeros(384, np.float32)
    e1[0], e2[1] = 1.0, 1.0
    Pilots(backbone.model_name, 10, "", [
        PilotEntry("claims", "claims", 100, e1), PilotEntry("cs", "claims", 1, -e1),
        PilotEntry("cs", "cs", 10, 0.6 * e1 + 0.8 * e2),
    ]).save(planted.root)
    q = e1[None, :]
    uniform = RouterQueryEncoder(backbone, planted.root, weighting="uniform").similarities(q)[0]
    count = RouterQueryEncoder(backbone, planted.root, weighting="count").similarities(q)[0]
    np.testing.assert_allclose(uniform, [0.0, 0.6], atol=1e-6)  # the paper's mean: one stray pilot cancels 100
    np.testing.assert_allclose(count, [99 / 101, 0.6], atol=1e-6)


def test_training_holds_the_pilot_queries_out(tmp_path: Path, backbone, corpus, domains) -> None:
    """A real (short) expert training: the pilot set is sampled first and never trained on, so
    Algorithm 1 scores each expert on queries it has not seen."""
    from router.config import ExpertTrainingConfig, RouterConfig
    from router.training import train_expert

    pairs = domains["claims"]["pilot"] + domains["claims"]["held_out"]
    rc = RouterConfig(pilot_queries=200, pilot_holdout=0.25,
                      training=ExpertTrainingConfig(max_steps=2, batch_size=4, threads=1))
    expert = train_expert(backbone, ExpertStore(tmp_path / "e"), "claims", "test", pairs, router_config=rc,
                          negatives=corpus, progress=False)
    pilot = {p.query for p in expert.pilot_set()}
    queries = {p.query for p in pairs}
    assert len(pilot) == int(0.25 * len(queries))
    trained = [p for p in pairs if p.query not in pilot]
    m = expert.manifest
    assert m.training.pilot_held_out and m.training.queries == len(queries) - len(pilot)
    assert m.training.data_hash == pairs_hash(trained)
    assert 0.0 <= m.metrics["pilot_ndcg10_expert"] <= 1.0
    loop = m.training.loop  # the shared loop's typed record: capped by max_steps, the recipe's schedule
    assert loop is not None and loop.steps == m.training.steps == 2 and loop.stop_reason == "max_steps"
    assert loop.learning_rates == [rc.training.learning_rate] and loop.max_grad_norm is None and loop.seed == 13
    assert m.training.final_loss == pytest.approx(sum(loop.loss_curve) / 2, abs=1e-4)
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["claims"], "written atomically, no partial dir"


def test_knn_votes_on_hand_made_pilots() -> None:
    from router.encoder import knn_votes

    members = np.array([[1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)  # unit vectors
    owner = np.array([0, 0, 1])
    q = np.array([[0.6, 0.8]], dtype=np.float32)
    one = knn_votes(q, members, owner, 2, 1)  # nearest: member 1 (cos 0.96), expert 0
    np.testing.assert_allclose(one, [[0.96, 0.0]], atol=1e-6)
    two = knn_votes(q, members, owner, 2, 2)  # members 1 (0.96) and 2 (0.8)
    np.testing.assert_allclose(two, [[0.48, 0.4]], atol=1e-6)
    every = knn_votes(q, members, owner, 2, 99)  # k is capped at the number of pilots
    np.testing.assert_allclose(every, [[(0.6 + 0.96) / 3, 0.8 / 3]], atol=1e-6)
