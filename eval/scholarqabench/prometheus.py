"""Prometheus-style five-point grading of long answers on organization, coverage and relevance
(ScholarQABench ``prometheus_eval.py`` with ``rubrics/prometheus_rubrics_v8.json``), by any LLM of
the ``LLM`` protocol (the benchmark used prometheus-7b-v2.0 and prometheus-8x7b-v2.0).

The prompt is Prometheus' absolute-grading prompt: the instruction (the benchmark's fixed
instruction plus the question), the response, the expert answer as the reference answer when the
subset has one (ScholarQA-Multi), and the rubric. A rubric with ``use_title`` shows the judge the
titles of the passages the response cites, one with ``use_docs`` their text. The grade is the
``[RESULT] n`` of the reply; a reply without one is counted in ``prometheus_unparsed`` and left
out of that aspect's mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eval.scholarqabench.judge_llm import ask, extract_result
from eval.scholarqabench.text import find_citations

INSTRUCTION = "Answer the question related to the most recent scientific literature."
SYSTEM = ("You are a fair judge assistant tasked with providing clear, objective feedback based on specific "
          "criteria, ensuring each assessment reflects the absolute standards set for performance.")
_HEAD = ("###Task Description:\nAn instruction (might include an Input inside it), a response to evaluate, {ref_intro}"
         "and a score rubric representing a evaluation criteria are given.\n"
         "1. Write a detailed feedback that assess the quality of the response strictly based on the given score "
         "rubric, not evaluating in general.\n"
         "2. After writing a feedback, write a score that is an integer between 1 and 5. You should refer to the "
         "score rubric.\n"
         "3. The output format should look as follows: \"(write a feedback for criteria) [RESULT] (an integer "
         "number between 1 and 5)\"\n"
         "4. Please do not generate any other opening, closing, and explanations.\n\n")


def rubric_text(rubric: dict[str, Any]) -> str:
    lines = [f"[{rubric['criteria_description']}]"]
    lines += [f"Score {i}: {rubric[f'score{i}_description']}" for i in range(1, 6)]
    return "\n".join(lines)


def build_prompt(question: str, response: str, rubric: dict[str, Any], reference: str | None) -> str:
    head = _HEAD.format(ref_intro="a reference answer that gets a score of 5, " if reference else "")
    body = (f"###The instruction to evaluate:\n{INSTRUCTION}\n{question}\n\n"
            f"###Response to evaluate:\n{response}\n\n")
    if reference:
        body += f"###Reference Answer (Score 5):\n{reference}\n\n"
    return head + body + f"###Score Rubrics:\n{rubric_text(rubric)}\n\n###Feedback: "


def _with_sources(item: dict[str, Any], rubric: dict[str, Any]) -> str:
    response = item["output"]
    ctxs = item.get("ctxs") or []
    cited = [i for i in dict.fromkeys(find_citations(response)) if 0 <= i < len(ctxs)]
    if rubric.get("use_docs") and cited:
        response += "\n\nReferences:\n" + "\n".join(
            f"[{i}] {ctxs[i].get('title', '')}: {ctxs[i].get('text', '')}" for i in cited)
    elif rubric.get("use_title") and cited:
        response += "\n\nReferences:\n" + "\n".join(f"[{i}] {ctxs[i].get('title', '')}" for i in cited)
    return response


def score_prometheus(items: Sequence[dict[str, Any]], llm: Any, rubrics: Sequence[dict[str, Any]], *,
                     progress: bool = False, max_tokens: int = 512) -> dict[str, Any]:
    """Mean 1-5 grade per aspect (``prometheus_<aspect>``) over items with ``input`` and ``output``."""
    from tqdm import tqdm

    out: dict[str, Any] = {}
    unparsed = 0
    for rubric in rubrics:
        aspect = rubric["aspect"]
        grades = []
        for item in tqdm(items, desc=f"prometheus {aspect}", disable=not progress):
            prompt = build_prompt(item.get("input", ""), _with_sources(item, rubric), rubric, item.get("answer"))
            grade = extract_result(ask(llm, SYSTEM, prompt, max_tokens=max_tokens))
            if grade is None:
                unparsed += 1
            else:
                grades.append(grade)
        out[f"prometheus_{aspect}"] = sum(grades) / len(grades) if grades else None
        out[f"prometheus_{aspect}_n"] = len(grades)
    out["prometheus_unparsed"] = unparsed
    return out
