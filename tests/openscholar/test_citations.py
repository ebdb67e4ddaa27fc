"""Citation parsing and verification, with the trained judge on hand-made supported/unsupported pairs."""

from __future__ import annotations

import pytest

from openscholar.answer import Reference
from openscholar.citations import cited_ids, parse_sentences, verify
from openscholar.judges.lexical import LexicalJudge
from openscholar.judges.llm_judge import LLMJudge
from openscholar.llm.scripted import ScriptedLLM

ASPIRIN = Reference(id=0, passage_id=10, paper_id="a", title="Aspirin and colorectal cancer", text=(
    "We pooled five randomized trials of daily aspirin. Over twenty years of follow-up, daily aspirin reduced the "
    "incidence of colorectal cancer by 24% and colorectal cancer mortality by 35%. Benefit increased with the "
    "duration of treatment. Gastrointestinal bleeding was more common in the aspirin groups."))
STATINS = Reference(id=1, passage_id=11, paper_id="b", title="Statin therapy in older adults", text=(
    "In this cohort of 120,000 adults over 75 years, statin use was associated with lower LDL cholesterol. "
    "Statin initiation was not associated with a reduction in all-cause mortality among participants without "
    "diabetes. Muscle symptoms were reported by 9% of users."))
SLEEP = Reference(id=2, passage_id=12, paper_id="c", title="Sleep deprivation and memory", text=(
    "Healthy volunteers were kept awake for 36 hours. Sleep deprivation impaired the consolidation of "
    "hippocampus-dependent declarative memories. Recovery sleep restored performance on the recall task."))
REFS = {r.id: r for r in (ASPIRIN, STATINS, SLEEP)}

# (statement, reference, supported?) written by hand: paraphrases vs. claims the passage does not make.
PAIRS = [
    ("Daily aspirin lowers the risk of developing colorectal cancer.", ASPIRIN, True),
    ("Long-term aspirin use reduces deaths from colorectal cancer.", ASPIRIN, True),
    ("Statins lower LDL cholesterol in adults older than 75.", STATINS, True),
    ("Losing a night of sleep impairs the consolidation of declarative memory.", SLEEP, True),
    ("Aspirin increases the risk of lung cancer.", ASPIRIN, False),
    ("Statins reduce all-cause mortality in older adults without diabetes.", STATINS, False),
    ("Sleep deprivation improves long-term memory.", SLEEP, False),
    ("Daily aspirin lowers the risk of developing colorectal cancer.", SLEEP, False),
]


def test_parse_sentences_and_citation_forms():
    parsed = parse_sentences("A is B [0][1]. C is D. [2] E is F [3, 4].\n\nNew para [1].")
    assert [(p.text, p.citations, p.paragraph) for p in parsed] == [
        ("A is B.", [0, 1], 0), ("C is D.", [2], 0), ("E is F.", [3, 4], 0), ("New para.", [1], 1)]
    assert cited_ids("x [2] y [0][2] z [5, 6]") == [2, 0, 5, 6]


def test_without_judge_only_unknown_ids_go():
    text, sentences = verify("Aspirin helps [0][9]. Statins too [1].\n\nSleep matters [2][3].", REFS, None)
    assert text == "Aspirin helps [0]. Statins too [1].\n\nSleep matters [2]."
    assert [s.removed for s in sentences] == [[9], [], [3]]


def test_lexical_judge_removes_and_attributes():
    text, sentences = verify(
        "Daily aspirin reduced the incidence of colorectal cancer by 24% [1]. Healthy volunteers were kept "
        "awake for 36 hours. The moon orbits the earth once a month [0].", REFS, LexicalJudge(), threshold=0.5)
    first, second, third = sentences
    assert first.citations == [0] and first.removed == [1] and first.attributed  # wrong id replaced
    assert second.citations == [2] and second.attributed  # uncited sentence attributed
    assert third.citations == [] and not third.supported and third.removed == [0]
    assert "[1]" not in text and text.count("[") == 2


BONE = Reference(id=0, passage_id=20, paper_id="d", title="Vitamin D supplementation and bone density", text=(
    "We randomized 300 women over 65 years to vitamin D3 or placebo for two years. Vitamin D supplementation "
    "increased lumbar spine bone mineral density by 1.8% compared with placebo. Falls were similar in both groups."))
NO_EFFECT = Reference(id=1, passage_id=21, paper_id="e", title="Vitamin D in men", text=(
    "Men aged 50 to 70 took vitamin D or placebo for one year. Vitamin D supplementation did not change hip bone "
    "mineral density. Serum 25-hydroxyvitamin D rose in the treated group."))
BONE_REFS = {0: BONE, 1: NO_EFFECT}


def _negation_aware(messages: list[dict[str, str]]) -> str | None:
    """A scripted LLM judge that reads negation the way a real judge should (control flow only)."""
    import re

    from openscholar.prompts import prompt_kind

    if prompt_kind(messages) != "support":
        return None
    user = messages[-1]["content"]
    passage = re.search(r"Text: (.*?)\n\nStatement:", user, re.DOTALL).group(1).lower()
    statement = re.search(r"Statement: (.*?)\n\n", user, re.DOTALL).group(1).lower()
    if "bone" not in statement or "bone" not in passage:
        return "Neither"
    negated_statement, negated_passage = " not " in f" {statement} ", " not " in f" {passage} "
    return "Supports" if negated_statement == negated_passage else "Contradicts"


def test_rules_a_negated_sentence_loses_its_citation_and_is_marked_contradicted():
    judge = LLMJudge(ScriptedLLM(fn=_negation_aware))
    text, sentences = verify("No, vitamin D supplementation does not improve bone mineral density [0].", {0: BONE},
                             judge, threshold=0.5)
    (s,) = sentences
    assert s.citations == [] and s.removed == [0] and s.status == "contradicted" and s.contradicted_by == [0]
    assert not s.supported and not s.attributed and "[0]" not in text


def test_rules_attribution_adds_only_supports_and_contradiction_wins():
    judge = LLMJudge(ScriptedLLM(fn=_negation_aware))
    _, sentences = verify(
        "Vitamin D supplementation increased bone mineral density in older women. "
        "Vitamin D supplementation did not change hip bone mineral density in men [1].", BONE_REFS, judge)
    first, second = sentences
    # The first cites nothing: passage 0 supports it (added), passage 1 contradicts it -> contradicted, no citation.
    assert first.status == "contradicted" and first.contradicted_by == [1] and first.citations == []
    # The second is supported by its own citation and contradicted by passage 0: marked, citation withdrawn.
    assert second.status == "contradicted" and second.contradicted_by == [0] and second.removed == [1]
    judge_one = LLMJudge(ScriptedLLM(fn=_negation_aware))
    _, (only,) = verify("Vitamin D supplementation increased bone mineral density in older women.", {0: BONE}, judge_one)
    assert only.status == "supported" and only.citations == [0] and only.added == [0] and only.attributed


def test_rules_unsupported_sentences_are_marked_in_markdown():
    from openscholar.answer import Answer

    judge = LexicalJudge()
    text, sentences = verify("Daily aspirin reduced the incidence of colorectal cancer by 24% [0]. The moon orbits "
                             "the earth once a month [0].", REFS, judge)
    answer = Answer(question="q", text=text, sentences=sentences, references=[ASPIRIN], passages=list(REFS.values()))
    md = answer.to_markdown()
    assert "colorectal cancer by 24% [1]." in md and "The moon orbits the earth once a month. _(unsupported)_" in md
    assert "[1] Aspirin and colorectal cancer." in md and "[0]" not in md


def test_passages_of_one_paper_share_its_reference_number():
    from openscholar.answer import Answer

    second = ASPIRIN.model_copy(update={"id": 2, "passage_id": 12, "text": "Gastrointestinal bleeding rose."})
    answer = Answer(question="q", text="Aspirin cut colorectal cancer [2]. Statins helped [1]. Both [0][2].",
                    references=[ASPIRIN, STATINS, second])
    md = answer.to_markdown()
    assert "Aspirin cut colorectal cancer [1]. Statins helped [2]. Both [1]." in md, md
    assert md.count("Aspirin and colorectal cancer") == 1 and "[2] Statin therapy in older adults" in md
    assert answer.reference_numbers() == {2: 1, 1: 2, 0: 1}


def test_llm_judge_reads_three_way_replies():
    llm = ScriptedLLM(["Supports.", "No.", "Contradicts", "maybe"])
    judge = LLMJudge(llm)
    assert judge.score([("s1", "T\np1"), ("s2", "T\np2"), ("s3", "p3"), ("s4", "p4")]) == [1.0, 0.0, 0.0, 0.5]
    assert [k for k, _ in llm.calls] == ["support"] * 4


@pytest.fixture(scope="module")
def trained_judge():
    from openscholar.judges.trained import PACKAGED_JUDGE, TrainedJudge

    if not (PACKAGED_JUDGE / "manifest.json").is_file():
        pytest.fail("the packaged judge artifact is missing: run `openscholar train judge --out "
                    "openscholar/judges/artifacts/support-3way`")
    return TrainedJudge(PACKAGED_JUDGE).warm_up()


@pytest.mark.xfail(strict=True, reason="the packaged 3-way judge under-scores paraphrased support (3/8 at the 0.5 "
                   "threshold; held-apart 3-way accuracy 0.64, see its manifest): the bar a better judge must clear")
def test_trained_judge_on_hand_made_pairs(trained_judge):
    from openscholar.citations import passage_text

    scores = trained_judge.score([(s, passage_text(r)) for s, r, _ in PAIRS])
    correct = sum((sc >= 0.5) == y for sc, (_, _, y) in zip(scores, PAIRS, strict=True))
    assert correct >= 6, list(zip(scores, [p[0] for p in PAIRS], strict=True))


def test_trained_judge_rejects_the_demo_negation(trained_judge):
    """The issue's demo: "does not improve bone density" citing a passage that reports a benefit."""
    text, (s,) = verify("No, vitamin D supplementation does not improve bone mineral density [0].", {0: BONE},
                        trained_judge)
    assert s.citations == [] and s.removed == [0] and s.status != "supported" and "[0]" not in text
    _, (ok,) = verify("Vitamin D supplementation increased bone mineral density [0].", {0: BONE}, trained_judge)
    assert ok.status == "supported" and ok.citations == [0]


def test_packaged_judge_manifest_reports_heldout_figures():
    import json

    from openscholar.judges.trained import PACKAGED_JUDGE

    manifest = json.loads((PACKAGED_JUDGE / "manifest.json").read_text())
    held, data = manifest["heldout"], manifest["data"]
    assert manifest["labels"] == ["supports", "contradicts", "neither"] and held["groups"] > 50
    overlap = data["scifact_overlap_with_scholarqabench_208"]
    assert overlap["claim_text_overlap"] == 0 and overlap["doc_overlap"] == 0 and overlap["test_docs_matched"] > 150
    assert held["accuracy_3way"] > held["majority_3way"]


class _MixedJudge:
    """One passage read as both supporting (one window) and contradicting (another) a sentence."""

    name = "mixed"
    threshold = 0.5

    @classmethod
    def from_config(cls, config: object = None, **_: object) -> _MixedJudge:
        return cls()

    def judge(self, pairs):
        from openscholar.judges.protocol import Judgement

        return [Judgement(supports=0.7, contradicts=0.9, neither=0.1) for _ in pairs]

    def score(self, pairs):
        return [j.supports for j in self.judge(pairs)]


def test_rules_mixed_evidence_is_neither_a_citation_nor_a_contradiction():
    from openscholar.verdict import decide_on_passages

    _, (s,) = verify("Vitamin D supplementation increased bone mineral density [0].", {0: BONE}, _MixedJudge())
    assert s.contradicted_by == [] and s.citations == [] and s.status == "unsupported" and s.removed == [0]
    assert decide_on_passages("Vitamin D improves bone density.", [BONE], _MixedJudge()).label == "not enough evidence"
