"""Accuracy, length, ROUGE-L, CS rubric and Prometheus scorers against hand-computed values."""

from __future__ import annotations

import json

import pytest

from eval.scholarqabench.accuracy import is_match, score_accuracy
from eval.scholarqabench.length import score_length
from eval.scholarqabench.prometheus import build_prompt, score_prometheus
from eval.scholarqabench.rouge import score_rouge
from eval.scholarqabench.rubric import RubricScorer
from eval.scholarqabench.rubric import score_length as rubric_length
from openscholar.llm.scripted import ScriptedLLM


def test_accuracy_is_substring_after_citations_are_stripped() -> None:
    assert is_match("true", "True [0]. The abstract says so.")
    assert is_match("yes", "Yes[0][1]")
    assert not is_match("false", "True [0]")
    assert is_match("true", "False, it is not true.")  # the benchmark's definition, kept as is
    items = [{"answer": "true", "output": "TRUE [1]"}, {"answer": "no", "output": "Yes [0]"},
             {"answer": "no", "output": "No."}, {"answer": "false", "output": "It is true"}]
    assert score_accuracy(items)["accuracy"] == pytest.approx(50.0)


def test_length_counts_words_without_citations() -> None:
    assert score_length([{"output": "a b [0] c"}, {"output": "one [1][2]"}])["length"] == pytest.approx(2.0)


def test_rouge_l_by_hand() -> None:
    # LCS("the cat sat", "the cat") = 2: P = 1, R = 2/3, F = 0.8
    r = score_rouge([{"output": "The cat [0]", "answer": "the cat sat"}])
    assert r["rougeL"] == pytest.approx(80.0)
    # Porter stemming: cats/cat and sitting/sit match
    assert score_rouge([{"output": "cats sitting", "answer": "cat sit"}])["rougeL"] == pytest.approx(100.0)
    with pytest.raises(ValueError):
        score_rouge([{"output": "x", "answer": None}])


def test_rubric_length_component() -> None:
    assert rubric_length("w " * 100, 300, 600) == 1.0
    assert rubric_length("w " * 450, 300, 600) == pytest.approx(0.5)
    assert rubric_length("w " * 900, 300, 600) == 0.0


def test_rubric_score_combines_components_with_the_data_weights() -> None:
    # A scripted judge (control flow only): every criterion scores 8/10 except the expertise one
    # (6/10); the claim split finds 4 claims, 2 cited, one of the 2 citations with an excerpt.
    claims = {"claims": [
        {"claim_text": "a", "citations": [{"citation_text": "[0]", "excerpts": ["x"]}]},
        {"claim_text": "b", "citations": [{"citation_text": "[1]", "excerpts": []}]},
        {"claim_text": "c", "citations": []}, {"claim_text": "d", "citations": []}]}

    def reply(messages):
        user = messages[-1]["content"]
        if user.startswith("Here is a response"):
            return "Sure: " + json.dumps(claims)
        if "level of expertise" in user:
            return '{"score": 6}'
        return '```json\n{"score": 8}\n```'

    cfg = {"config": {"question": "Q?", "low_length": 300, "high_length": 600, "length_weight": 0.05,
                      "expertise_weight": 0.05, "citations_weight": 0.2, "excerpts_weight": 0.1,
                      "other_properties": [
                          {"name": "most_important_item_0", "criterion": "c0", "weight": 0.4, "evidence": ["e0"]},
                          {"name": "nice_to_have_item_0", "criterion": "c1", "weight": 0.2}]}}
    llm = ScriptedLLM(fn=reply)
    result = RubricScorer(llm).score_output("w " * 450, cfg)
    assert result["length"] == pytest.approx(0.5)
    assert result["citations"] == pytest.approx(0.5) and result["excerpts"] == pytest.approx(0.5)
    # 0.05*0.5 + 0.05*0.6 + 0.2*0.5 + 0.1*0.5 + 0.6*0.8
    assert result["score"] == pytest.approx(0.025 + 0.03 + 0.1 + 0.05 + 0.48)
    criteria = [m[-1]["content"] for _, m in llm.calls if "<criterion>" in m[-1]["content"]]
    assert any("c0" in c and "e0" in c for c in criteria)  # evidence shown with its item
    # a judge reply without JSON scores 0 for that component
    bad = RubricScorer(ScriptedLLM(fn=lambda m: "I cannot judge this.")).score_output("w " * 100, cfg)
    assert bad["score"] == pytest.approx(0.05 * 1.0)


def test_prometheus_parses_results_and_builds_the_absolute_prompt() -> None:
    rubric = {"aspect": "organization", "criteria_description": "Organization?", "use_title": False,
              "use_docs": False, **{f"score{i}_description": f"level {i}" for i in range(1, 6)}}
    coverage = dict(rubric, aspect="coverage", use_title=True)
    prompt = build_prompt("Why?", "Because [0].", rubric, "Expert answer")
    assert "###Reference Answer (Score 5):\nExpert answer" in prompt and "Score 5: level 5" in prompt
    assert "reference answer that gets a score of 5" in prompt
    assert "Reference Answer" not in build_prompt("Why?", "Because.", rubric, None)
    replies = iter(["Fine. [RESULT] 4", "Meh [RESULT] 2", "no format here", "[RESULT] 5"])
    llm = ScriptedLLM(fn=lambda m: next(replies))
    items = [{"input": "Why?", "output": "Because [0].", "ctxs": [{"title": "Paper T", "text": "x"}]},
             {"input": "How?", "output": "Like this.", "ctxs": []}]
    r = score_prometheus(items, llm, [rubric, coverage])
    assert r["prometheus_organization"] == pytest.approx(3.0)
    assert r["prometheus_coverage"] == pytest.approx(5.0) and r["prometheus_coverage_n"] == 1
    assert r["prometheus_unparsed"] == 1
    coverage_prompt = llm.calls[2][1][-1]["content"]
    assert "References:\n[0] Paper T" in coverage_prompt  # use_title shows cited titles
