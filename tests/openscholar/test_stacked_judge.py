"""The stacked support judge: the shared contract, hand-made pairs (paraphrases supported; a negated
sentence and a changed number not), the verification rules with it, and its artifact's honesty
(calibration on train groups only, zero overlap with the ScholarQABench 208, the adapter check)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from openscholar.answer import Reference
from openscholar.citations import passage_text, verify
from openscholar.judges.nli import JudgeUnavailable
from openscholar.judges.stack_features import (
    FEATURES,
    direction_conflict,
    negations,
    number_missing,
)
from openscholar.judges.stacked import PACKAGED_STACKED, StackedJudge, to_half
from tests.openscholar.judge_contract import SupportJudgeContract
from tests.openscholar.test_citations import ASPIRIN, PAIRS

BONE = Reference(id=0, passage_id=20, paper_id="d", title="Vitamin D and bone density", text=(
    "We randomly assigned 311 postmenopausal women to vitamin D3 or placebo for one year. Vitamin D "
    "supplementation increased bone mineral density at the lumbar spine by 2.1% compared with placebo."))


@pytest.fixture(scope="module")
def stacked() -> StackedJudge:
    return StackedJudge().warm_up()


class TestStackedContract(SupportJudgeContract):
    backend = "stacked"

    @pytest.fixture
    def judge(self, stacked: StackedJudge) -> StackedJudge:
        return stacked


def test_hand_made_pairs(stacked: StackedJudge):
    """The paraphrase / non-claim pairs the trained judge fails (3/8, xfail in test_citations): the
    stacked judge gets 5/8 (its misses: on-topic claims the passage does not make, e.g. a reversed
    finding phrased without a negation cue), so the bar here is "better than the trained judge"."""
    scores = stacked.score([(s, passage_text(r)) for s, r, _ in PAIRS])
    correct = sum((sc >= stacked.threshold) == y for sc, (_, _, y) in zip(scores, PAIRS, strict=True))
    assert correct >= 5, list(zip(scores, [p[0] for p in PAIRS], strict=True))
    supported = [sc for sc, (_, _, y) in zip(scores, PAIRS, strict=True) if y]
    assert all(sc >= stacked.threshold for sc in supported)  # no paraphrase loses its citation


def test_negated_and_changed_number_sentences_are_not_supported(stacked: StackedJudge):
    passage = passage_text(ASPIRIN)
    original = "Daily aspirin reduced the incidence of colorectal cancer by 24% over twenty years."
    negated = "Daily aspirin did not reduce the incidence of colorectal cancer over twenty years."
    number = "Daily aspirin reduced the incidence of colorectal cancer by 60% over twenty years."
    ok, neg, num = stacked.judge([(original, passage), (negated, passage), (number, passage)])
    assert ok.supports >= stacked.threshold and ok.relation() == "supports"
    assert neg.supports < stacked.threshold and neg.relation() != "supports"
    assert num.supports < stacked.threshold and num.relation() != "supports"


def test_verification_with_the_stacked_judge(stacked: StackedJudge):
    """The issue's demo: a negated sentence loses its citation; the true one keeps it."""
    text, (s,) = verify("No, vitamin D supplementation does not improve bone mineral density [0].", {0: BONE}, stacked)
    assert s.citations == [] and s.removed == [0] and s.status != "supported" and "[0]" not in text
    _, (ok,) = verify("Vitamin D supplementation increased bone mineral density [0].", {0: BONE}, stacked)
    assert ok.status == "supported" and ok.citations == [0]


def test_mismatch_detectors():
    assert negations("Aspirin did not reduce risk.") == 1 and negations("Aspirin reduced risk.") == 0
    assert negations("The difference was not statistically significant.") == 2
    assert number_missing("It fell by 24% in 36 hours.", "a 24% fall") == 0.5
    assert number_missing("It fell sharply.", "anything") == 0.0
    # perturb's opposites, one per word (increases -> reduces: its last pair wins)
    assert direction_conflict("X promotes Y.", "X inhibits Y in mice.") == 1.0
    assert direction_conflict("X increases Y.", "X reduces Y in mice.") == 1.0
    assert direction_conflict("X promotes Y.", "X promotes Y, and inhibits Z.") == 0.0


def test_scores_are_mapped_so_the_threshold_sits_at_half():
    p = np.array([0.0, 0.1, 0.3, 0.5, 0.9, 1.0])
    out = to_half(p, 0.3)
    assert out[2] == pytest.approx(0.5) and out[0] == 0.0 and out[-1] == pytest.approx(1.0)
    assert np.all(np.diff(out) > 0)


def test_packaged_manifest_is_honest():
    manifest = json.loads((PACKAGED_STACKED / "manifest.json").read_text())
    assert manifest["features"] == list(FEATURES)
    assert set(manifest["relevance"]["features"]) < set(FEATURES) and manifest["faithfulness"]["features"] == list(FEATURES)
    assert "TRAIN groups only" in manifest["calibration"]["chosen_on"]
    assert 0 < manifest["calibration"]["support_threshold"] < 1 and 0 < manifest["calibration"]["contradict_threshold"] < 1
    overlap = manifest["data"]["scifact_overlap_with_scholarqabench_208"]
    assert overlap["claim_text_overlap"] == 0 and overlap["doc_overlap"] == 0 and overlap["test_docs_matched"] > 150
    held = manifest["heldout"]
    # the bar it was made the default for: above the lexical judge on held-apart expert and SciFact pairs
    assert held["stacked"]["multi"]["auc"] > held["lexical"]["multi"]["auc"]
    assert held["stacked"]["scifact"]["auc"] > held["lexical"]["scifact"]["auc"]


def test_refuses_another_trained_adapter(tmp_path: Path):
    from openscholar.judges.trained import PACKAGED_JUDGE

    other = tmp_path / "judge"
    shutil.copytree(PACKAGED_JUDGE, other)
    (other / "adapter_model.safetensors").write_bytes(b"not the adapter the stack was fit over")
    with pytest.raises(JudgeUnavailable, match="another trained judge") as err:
        StackedJudge(trained_path=other)
    assert "train stacked-judge" in err.value.hint
    with pytest.raises(JudgeUnavailable, match="no stacked support judge"):
        StackedJudge(tmp_path / "nowhere")


def test_built_from_settings(tmp_path: Path):
    from openscholar.judges import build_judge
    from openscholar.settings import Settings

    s = Settings(cache_dir=tmp_path, citations={"judge": "stacked", "judge_windows": 4})
    judge = build_judge(s.citations, cache_dir=s.cache_path)
    assert isinstance(judge, StackedJudge) and judge.path == PACKAGED_STACKED
    assert judge.reader.trained.windows_per_passage == 4


LONG_BONE = Reference(id=1, passage_id=21, paper_id="e", title="Vitamin D trial", text=(
    "Participants were recruited from twelve outpatient clinics. Exclusion criteria included renal disease and "
    "prior fractures. Randomization was stratified by age and clinic. Adherence was checked by pill counts every "
    "three months. Serum calcium was measured at baseline and at twelve months. Vitamin D supplementation did not "
    "improve bone mineral density at the hip or the spine compared with placebo. Adverse events were rare and "
    "similar between groups. Dropout was eight percent. The trial was funded by a national agency. Data were "
    "analysed by intention to treat."))


def test_verdict_reads_only_the_closest_windows(stacked: StackedJudge):
    """A verdict reads ``windows`` windows per passage (closest by words, each alone) with the same
    loaded models, and on the demo's evidence decides as reading whole passages does."""
    from openscholar.answer import Evidence
    from openscholar.verdict import decide

    statement = "Vitamin D supplementation improves bone mineral density."
    narrow = stacked.with_windows(2)
    assert narrow.reader.trained._net is stacked.reader.trained._net and narrow.reader._embedder is stacked.reader._embedder
    assert stacked.reader.trained.windows_per_passage == 8 and stacked.with_windows(8) is stacked
    wins = narrow.reader.trained.windows_of(statement, passage_text(LONG_BONE))
    assert len(wins) == 2 and len(stacked.reader.trained.windows_of(statement, passage_text(LONG_BONE))) == 8
    assert any("did not improve bone mineral density" in w for w in wins)  # the finding is among the 2
    refs = {0: BONE, 1: LONG_BONE}
    quotes = [(0, "Vitamin D supplementation increased bone mineral density at the lumbar spine by 2.1% compared with placebo."),
              (1, "Vitamin D supplementation did not improve bone mineral density at the hip or the spine compared with placebo.")]
    for claim, ref in (("Vitamin D supplementation increased bone mineral density at the lumbar spine.", {0: BONE}),
                       ("Vitamin D supplementation improves hip bone mineral density.", {1: LONG_BONE}),
                       (statement, refs)):
        ev = [Evidence(reference=r, start=refs[r].text.index(q), end=refs[r].text.index(q) + len(q), quote=q, score=0.9)
              for r, q in quotes if r in ref]
        full, fast = decide(claim, ev, ref, stacked, windows=None), decide(claim, ev, ref, stacked, windows=2)
        assert fast.label == full.label, (claim, full, fast)
        if len(ref) == 1:  # one passage: both lean the same way (two that disagree: the lean is a coin toss)
            assert (fast.supports >= fast.contradicts) == (full.supports >= full.contradicts), (claim, full, fast)
    assert full.label == "not enough evidence"  # the demo: one trial for, one against (mixed)


def test_window_probabilities_do_not_depend_on_batch_order(stacked: StackedJudge):
    """Pairs are batched by length; each pair's probabilities come back in input order."""
    trained = stacked.reader.trained
    pairs = [(s, w) for s, r, _ in PAIRS[:4] for w in trained.windows_of(s, passage_text(r))]
    forward = trained.probabilities(pairs)
    backward = trained.probabilities(pairs[::-1])[::-1]
    assert len({round(p[0], 3) for p in forward}) > 1
    assert np.allclose(np.asarray(forward), np.asarray(backward), atol=1e-4)
