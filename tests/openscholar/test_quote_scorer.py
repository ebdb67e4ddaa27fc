"""The quote scorer: its finding features, old manifests scoring as before, the fitted weights
preferring result sentences, and `openscholar train quotes`' comparison of models on held-apart claims."""

from __future__ import annotations

import json

import numpy as np
import pytest

from openscholar.answer import Reference
from openscholar.evidence import candidates, score_by_length, select_evidence
from openscholar.judges.lexical import overlap
from openscholar.quote_features import (
    FEATURE_SETS,
    FEATURES,
    SentenceContext,
    feature_matrix,
    finding_features,
    result_cues,
)
from openscholar.quote_scorer import (
    PACKAGED_QUOTE_SCORER,
    CalibratedScorer,
    load_calibration,
    train_quote_scorer,
)
from tests.conftest import SCIFACT


class _OverlapBase:
    """A deterministic stand-in cross-encoder: 10 x the word overlap, minus a length term (not constant,
    so the calibration has something to weigh)."""

    def score(self, query: str, texts):
        return np.asarray([10 * overlap(query, t) - 0.01 * len(t) for t in texts])


def test_headings_at_the_sentence_start_are_classified():
    kinds = {t: (f["result_heading"], f["setup_heading"]) for t in [
        "RESULTS: Vitamin D raised bone density.", "CONCLUSIONS Vitamin D raised bone density.",
        "Conclusions: vitamin D raised bone density.", "OBJECTIVE To assess vitamin D and bone density.",
        "BACKGROUND Vitamin D and bone density.", "METHODS AND RESULTS We enrolled 300 women.",
        "DNA methylation was higher in cases.", "Results were mixed across the trials."]
        for f in [finding_features(t)]}
    assert [v for v in kinds.values()] == [(1, 0), (1, 0), (1, 0), (0, 1), (0, 1), (0, 1), (0, 0), (0, 0)]


def test_section_is_the_last_heading_before_the_sentence():
    passage = ("BACKGROUND Vitamin D matters. We enrolled 300 women. RESULTS Density rose by 2%. "
               "It rose most in the spine. CONCLUSIONS Supplement older women.")
    spans = [(passage.index(s), passage.index(s) + len(s)) for s in
             ["We enrolled 300 women.", "It rose most in the spine.", "CONCLUSIONS Supplement older women."]]
    x = feature_matrix([passage[a:b] for a, b in spans], [SentenceContext(passage, a, b) for a, b in spans])
    col = {n: x[:, i].tolist() for i, n in enumerate(FEATURES)}
    assert col["setup_section"] == [1, 0, 0] and col["result_section"] == [0, 1, 1]
    assert col["result_heading"] == [0, 0, 1] and col["position"] == sorted(col["position"]) and col["position"][0] > 0
    # without a context the sentence is its own passage: no inherited section, position 0
    alone = feature_matrix(["It rose most in the spine."])
    assert alone[0, FEATURES.index("result_section")] == 0 and alone[0, FEATURES.index("position")] == 0
    with pytest.raises(ValueError, match="one context per text"):
        feature_matrix(["a", "b"], [SentenceContext("a", 0, 1)])


def test_aim_phrasing_and_result_cues():
    aim = [finding_features(t)["aim"] for t in [
        "The aims of this study were to assess vitamin D.", "We sought to determine whether vitamin D helps.",
        "This review summarises the trials of vitamin D.", "Vitamin D increased bone density by 2% (p < 0.01)."]]
    assert aim == [1, 1, 1, 0]
    assert result_cues("Vitamin D increased bone density by 2% (95% CI 1.1-2.9; p < 0.01) compared with placebo.") >= 5
    assert result_cues("Low vitamin D is associated with fractures.") == 0  # present-tense background
    assert result_cues("Low vitamin D was associated with fractures (OR 1.8).") == 2


def _packaged_scorer() -> tuple[CalibratedScorer, dict]:
    calibration = load_calibration() or {}
    return CalibratedScorer(_OverlapBase(), calibration["a"], calibration["b"], calibration["w"],
                            calibration.get("finding")), calibration


def test_an_old_manifest_scores_exactly_as_before():
    """A manifest without finding weights gives a * logit + w * overlap + b, bit for bit."""
    calibration = load_calibration() or {}
    base = _OverlapBase()
    texts = ["RESULTS: Vitamin D raised bone mineral density by 2%.", "OBJECTIVE To assess vitamin D.",
             "The aims of this study were to test bone mineral density.", "Stool samples were sequenced."]
    query = "Does vitamin D supplementation improve bone mineral density?"
    old = {k: calibration[k] for k in ("a", "b", "w")}
    reference = (old["a"] * np.asarray(base.score(query, texts)) + old["w"] * np.asarray([overlap(query, t) for t in texts])
                 + old["b"])
    for scorer in (CalibratedScorer(base, old["a"], old["b"], old["w"]),
                   CalibratedScorer(base, old["a"], old["b"], old["w"], {}),
                   CalibratedScorer(base, old["a"], old["b"], old["w"], {f: 0.0 for f in FEATURES})):
        assert np.array_equal(scorer.score(query, texts), reference)
        ctx = [SentenceContext(" ".join(texts), 0, len(t)) for t in texts]
        assert np.array_equal(scorer.score_in_context(query, texts, ctx), reference)


def test_an_unknown_finding_feature_is_an_error_with_a_hint():
    with pytest.raises(ValueError, match="train quotes"):
        CalibratedScorer(_OverlapBase(), finding={"is_cool": 1.0})


def test_fitted_weights_rank_a_result_sentence_above_a_setup_one_of_equal_overlap():
    """Under the packaged weights (when they include finding features), of two sentences with the same
    words the one under a RESULTS heading outranks the one under PURPOSE, and of one sentence the copy
    late in its abstract (where results are) outranks the copy at its start; the two-feature model
    cannot tell either pair apart."""
    scorer, calibration = _packaged_scorer()
    finding = calibration.get("finding") or {}
    if not finding:
        pytest.skip("the packaged manifest has no finding weights (they did not beat the two-feature model)")
    old = CalibratedScorer(_OverlapBase(), calibration["a"], calibration["b"], calibration["w"])
    query = "Does vitamin D supplementation improve bone mineral density?"
    checked = 0
    if {"result_heading", "setup_heading", "result_section", "setup_section"} & set(finding):
        result = "RESULTS: Vitamin D supplementation and bone mineral density in older women."
        other = "PURPOSE: Vitamin D supplementation and bone mineral density in older women."
        assert overlap(query, result) == overlap(query, other) and len(result) == len(other)
        s = scorer.score(query, [result, other])
        assert s[0] > s[1], s
        assert old.score(query, [result, other])[0] == old.score(query, [result, other])[1]
        checked += 1
    if "position" in finding:
        sentence = "Vitamin D supplementation changed bone mineral density."
        filler = "Older women were enrolled in twelve clinics."
        passage = f"{sentence} {filler} {filler} {filler} {sentence}"
        contexts = [SentenceContext(passage, 0, len(sentence)),
                    SentenceContext(passage, len(passage) - len(sentence), len(passage))]
        s = scorer.score_in_context(query, [sentence, sentence], contexts)
        assert s[1] > s[0], s
        o = old.score_in_context(query, [sentence, sentence], contexts)
        assert o[0] == o[1]
        checked += 1
    assert checked, f"no check covers the packaged finding features {sorted(finding)}"


def test_select_evidence_gives_the_scorer_each_sentence_in_its_passage():
    refs = [Reference(id=0, paper_id="p", title="t", text=(
        "BACKGROUND Vitamin D deficiency is common in older women. RESULTS Vitamin D supplementation increased "
        "bone mineral density by 2%. CONCLUSIONS Supplementation helps bone mineral density."))]
    seen: list[tuple[str, SentenceContext]] = []

    class Recording(CalibratedScorer):
        def score_in_context(self, query, texts, contexts):
            seen.extend(zip(texts, contexts, strict=True))
            return super().score_in_context(query, texts, contexts)

    scorer = Recording(_OverlapBase(), 1.0, 0.0, 0.0, {"result_section": 1.0})
    cands = candidates(refs)
    scores = score_by_length(scorer, "q", [c.quote for c in cands], [c.context for c in cands])
    assert all(c.passage[c.start:c.end] == t for t, c in seen) and len(seen) == len(cands) == 3
    assert scores[0] < scores[1]  # the result section's sentence gets the weight
    evidence, _ = select_evidence("Does vitamin D improve bone mineral density?", refs, scorer, k=3, per_paper=3)
    assert all(refs[0].text[e.start:e.end] == e.quote for e in evidence)


@pytest.mark.slow
def test_train_quotes_compares_every_model_on_the_same_split(shared_data, tmp_path):
    """The fit on a few real SciFact claims: every model in the table, the write policy honoured, and a
    written manifest that the scorer loads."""
    sqa = shared_data / "scholarqabench"
    if not sqa.is_dir():
        pytest.skip("ScholarQABench not in the shared data")
    out = tmp_path / "m.json"
    m = train_quote_scorer(SCIFACT, sqa, _OverlapBase(), out, train_claims=40, dev_claims=20, write="finding",
                           finding=None)
    table = m["heldout"]["models"]
    for name in ("old (logit + overlap)", "new", "logit + overlap + heading", "heading alone", "cues alone"):
        assert 0 < table[name]["mrr"] <= 1 and 0 <= table[name]["top1"] <= table[name]["mrr"]
    selection = m["train"]["selection"]
    assert list(m["finding"]) == selection["features"] == selection["selected"] and m["heldout"]["model"] == "new"
    assert all(set(FEATURE_SETS[n]) <= set(selection["features"]) for n in selection["steps"][-1]["sets"])
    assert [s["mrr"] for s in selection["steps"]] == sorted(s["mrr"] for s in selection["steps"])  # each step gains
    assert m["heldout"]["calibrated"] == {k: table["new"][k] for k in ("mrr", "top1")}
    written = json.loads(out.read_text())
    assert written == m
    CalibratedScorer(_OverlapBase(), written["a"], written["b"], written["w"], written["finding"])
    old = train_quote_scorer(SCIFACT, sqa, _OverlapBase(), out, train_claims=40, dev_claims=20, write="old",
                             finding=("result_heading", "setup_heading"))
    assert old["train"]["selection"]["features"] == ["result_heading", "setup_heading"]
    assert old["heldout"]["models"]["new"]["weights"].keys() == {"logit", "overlap", "result_heading", "setup_heading",
                                                                 "bias"}
    assert "finding" not in old and old["heldout"]["calibrated"] == {
        k: old["heldout"]["models"]["old (logit + overlap)"][k] for k in ("mrr", "top1")}
    assert old["a"] == pytest.approx(table["old (logit + overlap)"]["weights"]["logit"], abs=1e-6)


def test_packaged_manifest_reports_the_comparison():
    m = json.loads(PACKAGED_QUOTE_SCORER.read_text())
    models = m["heldout"].get("models")
    if models is None:
        pytest.skip("the packaged manifest predates the model comparison")
    old, new = models["old (logit + overlap)"], models["new"]
    shipped = "finding" in m
    assert shipped == (new["mrr"] > old["mrr"] and new["top1"] > old["top1"])
