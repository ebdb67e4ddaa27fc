"""The SupportJudge contract, run against every backend (issue 16 item 6).

A backend's test class subclasses `SupportJudgeContract`, names its registry entry in ``backend``
and provides a ``judge`` fixture; the
shared tests check what every caller relies on: one `Judgement` per pair in input order, scores in
[0, 1], ``score`` equal to the ``supports`` scores, the empty input, order independence, and a
``from_config`` constructor. ``supported_pair`` / ``unrelated_pair`` may be overridden where a
backend reads only particular inputs (the scripted LLM).
"""

from __future__ import annotations

import pytest

from openscholar.judges.protocol import Judgement, SupportJudge
from openscholar.judges.registry import JUDGES

SUPPORTED = ("Daily aspirin reduced the incidence of colorectal cancer.",
             ("Aspirin trials\nWe pooled five randomized trials. Daily aspirin reduced the incidence of colorectal "
              "cancer by 24% over twenty years."))
UNRELATED = ("The moon orbits the earth once a month.",
             "Sleep study\nHealthy volunteers were kept awake for 36 hours before a memory test.")


class SupportJudgeContract:
    backend = ""  # the registry name (``citations.judge``) of the backend the subclass tests
    supported_pair = SUPPORTED
    unrelated_pair = UNRELATED

    @pytest.fixture
    def judge(self) -> SupportJudge:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def test_satisfies_the_protocol(self, judge: SupportJudge) -> None:
        assert isinstance(judge, SupportJudge)
        assert isinstance(judge.name, str) and judge.name
        assert callable(getattr(type(judge), "from_config", None))

    def test_is_the_registered_backend(self, judge: SupportJudge) -> None:
        assert self.backend in JUDGES.names()
        assert isinstance(judge, JUDGES.get(self.backend))

    def test_one_judgement_per_pair_in_range(self, judge: SupportJudge) -> None:
        pairs = [self.supported_pair, self.unrelated_pair, self.supported_pair]
        out = judge.judge(pairs)
        assert len(out) == 3 and all(isinstance(j, Judgement) for j in out)
        for j in out:
            assert all(0.0 <= v <= 1.0 for v in (j.supports, j.contradicts, j.neither))
        assert out[0] == out[2]

    def test_score_is_the_support_score(self, judge: SupportJudge) -> None:
        pairs = [self.supported_pair, self.unrelated_pair]
        assert judge.score(pairs) == pytest.approx([j.supports for j in judge.judge(pairs)], abs=1e-6)

    def test_empty_input(self, judge: SupportJudge) -> None:
        assert judge.judge([]) == [] and judge.score([]) == []

    def test_order_independent(self, judge: SupportJudge) -> None:
        pairs = [self.supported_pair, self.unrelated_pair]
        forward, backward = judge.score(pairs), judge.score(list(reversed(pairs)))
        assert forward == pytest.approx(list(reversed(backward)), abs=1e-5)

    def test_support_ranks_above_unrelated(self, judge: SupportJudge) -> None:
        supported, unrelated = judge.score([self.supported_pair, self.unrelated_pair])
        assert supported > unrelated
