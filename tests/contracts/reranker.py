"""The Reranker contract: what every caller of ``rerank(query, hits, k)`` relies on.

A backend's test class subclasses `RerankerContract` and provides a ``reranker`` fixture. The shared
tests check: the protocol and its ``stage`` name; the output is a permutation of the input (the same
passages, untouched, each once) sorted by its final score; ``k`` bounds the output to the top ``k``
of the full ranking (``k`` beyond the input gives all); earlier stages' scores are kept and the
reranker's own is added under its stage; the empty input; determinism and independence from the
input order; and the one relevant passage moves to the top from last place.
"""

from __future__ import annotations

import pytest

from datastore.models import Passage
from retriever.protocols import Hit
from retriever.reranker import Reranker

QUERY = "Vitamin D supplements prevent fractures in elderly women."
RELEVANT = ("Vitamin D and bone", "Vitamin D supplementation reduced fracture risk in older women.")
OTHERS = [
    ("Wind turbines", "Offshore wind farms change local bird migration routes."),
    ("Graphene", "Graphene oxide membranes filter ions."),
    ("Malaria vaccine", "The RTS,S vaccine reduced clinical malaria in African children."),
    ("Sleep", "Healthy volunteers were kept awake for 36 hours before a memory test."),
]


def make_hits() -> list[Hit]:
    """Five candidates with equal first-stage scores (so the order can only come from the reranker),
    the relevant passage last."""
    rows = [*OTHERS, RELEVANT]
    return [Hit(Passage(i + 1, f"paper{i + 1}", title, text), 0.5, {"fusion": 0.5, "dense": 0.4 + 0.01 * i})
            for i, (title, text) in enumerate(rows)]


RELEVANT_ID = len(OTHERS) + 1


class RerankerContract:
    @pytest.fixture
    def reranker(self) -> Reranker:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def test_satisfies_the_protocol(self, reranker: Reranker) -> None:
        assert isinstance(reranker, Reranker)
        assert isinstance(reranker.stage, str) and reranker.stage

    def test_a_sorted_permutation_of_the_input(self, reranker: Reranker) -> None:
        hits = make_hits()
        out = reranker.rerank(QUERY, hits)
        assert sorted(h.passage.passage_id for h in out) == [h.passage.passage_id for h in hits]
        assert [h.score for h in out] == sorted((h.score for h in out), reverse=True)
        by_id = {h.passage.passage_id: h.passage for h in hits}
        assert all(h.passage == by_id[h.passage.passage_id] for h in out), "passages come back untouched"

    def test_k_bounds_the_output_to_the_top_k(self, reranker: Reranker) -> None:
        full = [h.passage.passage_id for h in reranker.rerank(QUERY, make_hits())]
        for k in (1, 3):
            top = reranker.rerank(QUERY, make_hits(), k)
            assert [h.passage.passage_id for h in top] == full[:k]
        assert len(reranker.rerank(QUERY, make_hits(), 50)) == len(full)
        assert reranker.rerank(QUERY, make_hits(), 0) == []

    def test_earlier_scores_are_kept_and_its_own_added(self, reranker: Reranker) -> None:
        hits = make_hits()
        before = {h.passage.passage_id: dict(h.scores) for h in hits}
        for h in reranker.rerank(QUERY, hits):
            assert {k: v for k, v in h.scores.items() if k != reranker.stage} == before[h.passage.passage_id]
            assert isinstance(h.scores[reranker.stage], float)
        assert [h.scores for h in hits] == list(before.values()), "the input hits are not modified"

    def test_empty_input(self, reranker: Reranker) -> None:
        assert reranker.rerank(QUERY, []) == []
        assert reranker.rerank(QUERY, [], 5) == []

    def test_deterministic_and_independent_of_input_order(self, reranker: Reranker) -> None:
        first = [(h.passage.passage_id, h.score) for h in reranker.rerank(QUERY, make_hits())]
        again = [(h.passage.passage_id, h.score) for h in reranker.rerank(QUERY, make_hits())]
        backward = {h.passage.passage_id: h.score for h in reranker.rerank(QUERY, make_hits()[::-1])}
        assert first == again
        # Each passage gets the same score whichever order the candidates came in (near-ties may swap).
        assert [backward[i] for i, _ in first] == pytest.approx([s for _, s in first], abs=1e-3)

    def test_the_relevant_passage_moves_to_the_top(self, reranker: Reranker) -> None:
        assert reranker.rerank(QUERY, make_hits())[0].passage.passage_id == RELEVANT_ID
