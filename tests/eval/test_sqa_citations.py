"""ALCE-style citation precision/recall against hand-computed fixtures (ScholarQABench rules)."""

from __future__ import annotations

import pytest

from eval.scholarqabench.citations import (
    Entailment,
    score_citations,
    score_item_long,
    score_item_short,
)
from eval.scholarqabench.text import find_citations, remove_citations, split_sentences
from tests.eval.sqa_helpers import FactTokenJudge

DOCS = [
    {"title": "d0", "text": "F1 F2"},
    {"title": "d1", "text": "F3"},
    {"title": "d2", "text": "F1"},
    {"title": "d3", "text": "F4"},
    {"title": "d4", "text": "nothing relevant"},
]

# One sentence per line of the comment in each; see the expected values below.
LONG_OUTPUT = (
    "Alpha statement about F1 and F2 with enough padding words here [0][1]. "  # S1: [0,1] supported, d1 overcites
    "Second statement about F3 again with enough padding words to pass. "  # S2: inherits [0,1]; d0 overcites
    "Short F9 [4]. "  # S3: under 50 characters: skipped, and not inherited from
    "Fourth statement mentions F4 and padding padding padding words [2][3][4][0]. "  # S4: first 3 kept
    "Fifth statement about F5 which no passage holds padding words [7]. "  # S5: out of range: unsupported
    "Sixth statement about F1 only with padding words to be long enough. "  # S6: inherits S4's (not S5's)
    "Seventh statement about F2 with a single citation and padding [1]."  # S7: [1] does not support F2
)


def test_text_helpers_follow_the_benchmark() -> None:
    assert find_citations("a [0][12] b [3, 4]") == [0, 12, 3]
    assert remove_citations("Yes [0][1], true [2].") == "Yes, true."
    sents = split_sentences(LONG_OUTPUT)
    assert len(sents) == 7
    assert sents[2] == "Short F9 [4]."
    assert split_sentences("Smith et al. showed F1 holds [0]. It does e.g. in mice.") == [
        "Smith et al. showed F1 holds [0].", "It does e.g. in mice."]


def test_long_form_inheritance_truncation_and_leave_one_out() -> None:
    judge = FactTokenJudge()
    s = score_item_long(LONG_OUTPUT, DOCS, Entailment(judge))
    assert s is not None
    # scored sentences: S1 S2 S4 S5 S6 S7 (S3 < 50 chars); supported: S1 S2 S4 S6
    assert s.sentences == 6
    assert s.recall == pytest.approx(4 / 6)
    # citations counted: S1 2 + S2 2 + S4 3 + S5 0 + S6 3 + S7 1 = 11; relevant: 1 + 1 + 1 + 0 + 1 + 0 = 4
    assert s.citations == 11
    assert s.precision == pytest.approx(4 / 11)
    by_sentence = {d["sentence"][:6]: d for d in s.detail}
    assert by_sentence["Alpha "]["irrelevant"] == [1]
    assert by_sentence["Second"]["citations"] == [0, 1] and by_sentence["Second"]["irrelevant"] == [0]
    assert by_sentence["Fourth"]["citations"] == [2, 3, 4]
    assert by_sentence["Fourth"]["irrelevant"] == [2, 4]
    assert by_sentence["Fifth "]["supported"] is False and by_sentence["Fifth "]["counted"] == 0
    assert by_sentence["Sixth "]["citations"] == [2, 3, 4] and by_sentence["Sixth "]["supported"] is True
    # the judge saw sentences without citation markers, passages as "Title: t\ntext"
    assert ("Alpha statement about F1 and F2 with enough padding words here.", "Title: d0\nF1 F2\nTitle: d1\nF3") \
        in judge.pairs


def test_sentence_without_citations_and_nothing_to_inherit_is_unsupported() -> None:
    out = ("The first long sentence has no citation at all, about F1 here. "
           "The second long sentence cites the passage about F1 right here [2].")
    s = score_item_long(out, DOCS, Entailment(FactTokenJudge()))
    assert s is not None
    assert (s.sentences, s.recall, s.citations, s.precision) == (2, 0.5, 1, 1.0)


def test_short_form_statement_is_question_plus_output() -> None:
    judge = FactTokenJudge()
    entails = Entailment(judge)
    docs = [{"title": "", "text": "F1"}, {"title": "", "text": "F9"}, {"title": "", "text": "F1 again"}]
    s = score_item_short("Claim F1", "True [0][1]", docs, entails)
    assert (s.recall, s.precision, s.citations) == (1.0, 0.5, 2)  # [1] alone fails, [0] without it holds
    assert judge.pairs[0] == ("Claim F1 True", "Title: \nF1\nTitle: \nF9")
    # no length filter, no citation: unsupported
    assert score_item_short("Claim F1", "True", docs, entails).recall == 0.0
    # range is checked on all citations before keeping the first three
    assert score_item_short("Claim F1", "True [0][1][2][9]", docs, entails).recall == 0.0
    # one citation that does not support
    s = score_item_short("Claim F1", "True [1]", docs, entails)
    assert (s.recall, s.precision) == (0.0, 0.0)


def test_aggregate_is_percent_and_skips_empty_outputs_like_the_benchmark() -> None:
    items = [
        {"input": "q", "output": LONG_OUTPUT, "ctxs": DOCS},
        {"input": "q", "output": "", "ctxs": DOCS},
        {"input": "q", "output": "Every long sentence here supports fact F3 and cites it [1].", "ctxs": DOCS},
    ]
    r = score_citations(items, Entailment(FactTokenJudge()), short=False)
    assert r["citation_n"] == 2 and r["citation_skipped"] == 1
    assert r["citation_recall"] == pytest.approx(100 * (4 / 6 + 1) / 2)
    assert r["citation_precision"] == pytest.approx(100 * (4 / 11 + 1) / 2)


def test_entailment_caches_and_thresholds() -> None:
    class Half:
        name = "half"
        calls = 0

        def score(self, pairs):
            Half.calls += 1
            return [0.5 for _ in pairs]

    e = Entailment(Half(), threshold=0.5)
    assert e("p", "c") is True and e("p", "c") is True
    assert Half.calls == 1
    assert Entailment(Half(), threshold=0.6)("p", "c") is False
