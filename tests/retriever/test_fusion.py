"""Fusion on hand-made rankings: values computed by hand, weights, missing entries, tie order."""

from __future__ import annotations

import pytest

from datastore.models import Passage
from retriever.config import FusionConfig
from retriever.fusion import Fusion, interpolate, reciprocal_rank_fusion
from retriever.protocols import Hit


def hit(pid: int, score: float, stage: str) -> Hit:
    return Hit(Passage(pid, f"paper-{pid}", f"title {pid}", f"text {pid}"), score, {stage: score})


DENSE = [hit(1, 0.9, "dense"), hit(2, 0.8, "dense"), hit(3, 0.5, "dense")]
SPARSE = [hit(3, 12.0, "bm25"), hit(4, 9.0, "bm25"), hit(1, 3.0, "bm25")]


def ids(hits: list[Hit]) -> list[int]:
    return [h.passage.passage_id for h in hits]


def test_rrf_matches_hand_computation() -> None:
    fused = reciprocal_rank_fusion({"dense": DENSE, "sparse": SPARSE}, k=60)
    expected = {1: 1 / 61 + 1 / 63, 2: 1 / 62, 3: 1 / 63 + 1 / 61, 4: 1 / 62}
    assert {h.passage.passage_id: h.score for h in fused} == pytest.approx(expected)
    # 1 and 3 tie on 1/61 + 1/63; 2 and 4 tie on 1/62: ties go to the best single-list rank, then the id.
    assert ids(fused) == [1, 3, 2, 4]
    one = next(h for h in fused if h.passage.passage_id == 1)
    assert one.scores == pytest.approx({"dense": 0.9, "bm25": 3.0, "fusion": 1 / 61 + 1 / 63})


def test_rrf_weights_move_the_order() -> None:
    fused = reciprocal_rank_fusion({"dense": DENSE, "sparse": SPARSE}, {"dense": 1.0, "sparse": 3.0}, k=60)
    # 3: 3/61 + 1/63 > 1: 1/61 + 3/63 > 4: 3/62 > 2: 1/62
    assert ids(fused) == [3, 1, 4, 2]
    assert fused[0].score == pytest.approx(3 / 61 + 1 / 63)


def test_rrf_k_changes_scores() -> None:
    fused = reciprocal_rank_fusion({"dense": DENSE}, k=1)
    assert [h.score for h in fused] == pytest.approx([1 / 2, 1 / 3, 1 / 4])


def test_interpolation_min_max_normalizes_each_list() -> None:
    fused = interpolate({"dense": DENSE, "sparse": SPARSE}, {"dense": 0.5, "sparse": 1.0})
    # dense: (s - 0.5) / 0.4; sparse: (s - 3) / 9; a passage missing from a list gets 0 from it.
    expected = {1: 0.5 * 1.0 + 0.0, 2: 0.5 * 0.75, 3: 0.0 + 1.0, 4: 1.0 * (6 / 9)}
    assert {h.passage.passage_id: h.score for h in fused} == pytest.approx(expected)
    assert ids(fused) == [3, 4, 1, 2]


def test_interpolation_of_constant_list_is_one() -> None:
    flat = [hit(7, 2.0, "bm25"), hit(8, 2.0, "bm25")]
    fused = interpolate({"sparse": flat})
    assert [h.score for h in fused] == [1.0, 1.0]


def test_fusion_from_config_and_inputs_untouched() -> None:
    before = [(h.score, dict(h.scores)) for h in DENSE + SPARSE]
    rrf = Fusion(FusionConfig(method="rrf", rrf_k=60)).fuse(DENSE, SPARSE)
    lin = Fusion(FusionConfig(method="interpolation", dense_weight=0.5, sparse_weight=1.0)).fuse(DENSE, SPARSE)
    assert ids(rrf) == [1, 3, 2, 4]
    assert ids(lin) == [3, 4, 1, 2]
    assert [(h.score, h.scores) for h in DENSE + SPARSE] == before


def test_empty_rankings() -> None:
    assert reciprocal_rank_fusion({"dense": [], "sparse": []}) == []
    assert interpolate({"dense": []}) == []
