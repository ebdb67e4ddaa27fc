"""Short-form citation scoring with the real support judge shipped as the default (``stacked``, built
on the 3-way judge trained here): citing the gold abstract must score better than citing another one.
The bare 3-way judge does not pass this (it rarely says "supports"; see tests/contracts' xfail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.judges import JudgeError, build_attribution_judge
from eval.scholarqabench.citations import Entailment, score_citations
from eval.scholarqabench.loaders import load_task

pytestmark = pytest.mark.slow  # loads the trained judge and scores ~16 pairs: minutes on a shared CPU


def test_default_judge_prefers_gold_citations(shared_data: Path) -> None:
    from openscholar.settings import load_settings

    try:
        judge = build_attribution_judge(load_settings(), "default")
        judge.score([("warm up", "warm up")])
    except (JudgeError, ImportError, FileNotFoundError) as exc:
        pytest.skip(f"trained support judge not available here: {exc}")
    examples = [ex for ex in load_task("scifact", root=shared_data / "scholarqabench") if ex.answer == "true"][:8]
    gold = [{"input": ex.input, "output": "True [0].", "ctxs": ex.gold_ctxs} for ex in examples]
    wrong = [{"input": ex.input, "output": "True [0].", "ctxs": examples[(i + 1) % len(examples)].gold_ctxs}
             for i, ex in enumerate(examples)]
    with_gold = score_citations(gold, Entailment(judge), short=True)
    with_wrong = score_citations(wrong, Entailment(judge), short=True)
    # The docstring's claim. No absolute bar on the wrong citations: the packaged judge is weak (held-out
    # accuracy 0.59) and accepted 2 of the 8 wrong citations on an AVX2 CPU but 3 on an AVX512-BF16 one.
    assert with_gold["citation_recall"] > with_wrong["citation_recall"]
    assert with_gold["citation_recall"] - with_wrong["citation_recall"] >= 25.0
