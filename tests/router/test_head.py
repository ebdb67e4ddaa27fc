"""The routing head (router.routing = "head") on the real base encoder and real pilot sets."""

from __future__ import annotations

import logging

import numpy as np

from router.encoder import RouterQueryEncoder
from router.experts import ExpertStore
from router.head import HEAD_FILE, RoutingHead, fit_head, fit_logistic
from router.pilots import compute_pilots
from tests.router.conftest import make_expert


def _two_domains(tmp_path, backbone, domains) -> ExpertStore:
    store = ExpertStore(tmp_path / "experts")
    make_expert(store, backbone, "claims", domains["claims"]["pilot"])
    make_expert(store, backbone, "cs", domains["cs"]["pilot"])
    return store


def test_head_routes_held_out_queries_to_their_domain(tmp_path, backbone, corpus, domains) -> None:
    store = _two_domains(tmp_path, backbone, domains)
    compute_pilots(backbone, store.experts(), corpus.vectors, corpus.lookup).save(store.root)
    head = fit_head(backbone, store.experts(), layer=2)
    assert head.experts == ["claims", "cs"] and head.weights.shape == (backbone.dim, 2)
    assert set(head.trained_on) == {"claims", "cs"} and all(v >= 0.8 for v in head.cv_accuracy.values())
    head.save(store.root)
    enc = RouterQueryEncoder(backbone, store.root, routing="head")
    assert enc.rule == "head"
    for domain in ("claims", "cs"):
        held = list(dict.fromkeys(p.query for p in domains[domain]["held_out"]))
        qv = enc.encode_queries(held)
        picked = [r.expert for r in qv.routing]
        assert picked.count(domain) >= len(held) - 1, (domain, picked)
        for d in qv.routing:
            assert d.rule == "head" and set(d.head) == {"claims", "cs"} and set(d.similarities) == {"claims", "cs"}
            assert abs(sum(d.head.values()) - 1) < 1e-4
            assert d.expert == max(d.head, key=d.head.get)
    # route() reports the head's probabilities as its scores and the same choices.
    texts = [p.query for p in domains["cs"]["held_out"][:4]]
    names, scores, base = enc.route(texts)
    assert names == [r.expert for r in enc.encode_queries(texts).routing]
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-4)
    assert base.shape == (len(texts), backbone.dim)


def test_head_fit_is_deterministic_and_round_trips(tmp_path, backbone, domains) -> None:
    store = _two_domains(tmp_path, backbone, domains)
    a = fit_head(backbone, store.experts(), layer=1)
    b = fit_head(backbone, store.experts(), layer=1)
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
    a.save(store.root)
    loaded = RoutingHead.load(store.root)
    assert loaded.layer == 1 and loaded.experts == a.experts and loaded.trained_on == a.trained_on
    assert np.array_equal(loaded.weights, a.weights) and np.array_equal(loaded.bias, a.bias)
    x = np.random.default_rng(0).standard_normal((3, backbone.dim)).astype(np.float32)
    # Restricted to a subset of its experts (router.experts), probabilities renormalize; unknown ones get 0.
    p = loaded.probabilities(x, ["cs", "other"])
    np.testing.assert_allclose(p[:, 0], 1.0, atol=1e-6)
    assert (p[:, 1] == 0).all()


def test_fit_logistic_separates_hand_made_classes() -> None:
    rng = np.random.default_rng(1)
    centers = np.eye(3, 8) * 3
    y = np.repeat(np.arange(3), [40, 10, 25])  # unbalanced: class weights keep the small one
    x = centers[y] + rng.standard_normal((len(y), 8)) * 0.5
    w, b = fit_logistic(x, y, 3)
    assert ((x @ w + b).argmax(axis=1) == y).mean() > 0.95


def test_missing_head_falls_back_to_pilots_with_a_warning(tmp_path, backbone, corpus, domains, caplog) -> None:
    store = _two_domains(tmp_path, backbone, domains)
    compute_pilots(backbone, store.experts(), corpus.vectors, corpus.lookup).save(store.root)
    assert not (store.root / HEAD_FILE).exists()
    enc = RouterQueryEncoder(backbone, store.root, routing="head")
    with caplog.at_level(logging.WARNING, logger="router.encoder"):
        routing = enc.encode_queries(["Which datasets evaluate code generation?"]).routing
    assert enc.rule == "pilots" and routing[0].rule == "pilots" and routing[0].head is None
    assert any("no routing head" in r.message for r in caplog.records)
