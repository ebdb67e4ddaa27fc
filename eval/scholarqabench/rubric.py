"""The ScholarQA-CS rubric score (multidoc_qa_eval's ``RubricCorpusQaGenericMetric``), judged by any
LLM of the ``LLM`` protocol (the benchmark used gpt-4-turbo / gpt-4o).

score = length_weight * length + expertise_weight * expertise + citations_weight * citations
        + excerpts_weight * excerpts + sum(item weight * item score)
with the data's weights (0.05, 0.05, 0.2, 0.1, and rubric items summing to 0.6):

- length: 1 at or under ``low_length`` words, falling linearly to 0 at ``high_length``;
- expertise and each rubric item: the judge's 0-10 score / 10 for that criterion;
- citations: share of the claims the judge finds in the answer that carry a citation;
- excerpts: share of those citations accompanied by an excerpt.

A judge reply without the JSON asked for scores that component 0, as the reference does. With
``snippets`` (the benchmark's ``--snippets``), a rubric item's evidence excerpts are shown to
the judge with its criterion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eval.scholarqabench.judge_llm import ask, extract_json

PROPERTY_SYSTEM = (
    "You will be given a question someone asked (in <question></question> tags) and the corresponding response "
    "(in <response></response> tags) given to them by an assistant.  You will then be given a specific criterion "
    "of the response to evaluate (in <criterion></criterion> tags).\n\nReturn a score on a scale of 0 to 10 "
    "indicating how appropriate the response is based on the given criterion.  Judge only the specified aspect(s), "
    'not any other qualities of the answer.  Output JSON in the format: {"score": x}.'
)
EXPERTISE = ("The level of expertise required to understand the answer should be roughly aligned with the "
             "estimated expertise of a typical person who would ask the question.")
CLAIMS_PROMPT = (
    "Here is a response to a question that includes several claims and citations:\nResponse: {response}\n\n"
    "Split the response into individual claims, citations, and excerpts from the citations, in JSON format: "
    '{{"claims": [{{"claim_text": "...", "citations": [{{"citation_text": "...", "excerpts": ["...", ...]}}, ...]}}, ...]}}'
    "\n\nIf a claim is missing citations or a citation is not accompanied by excerpts, some lists may be empty "
    "in your output."
)


def score_length(response: str, low_length: int, high_length: int) -> float:
    words = len(response.split())
    return 1 - ((max(min(high_length, words), low_length) - low_length) / (high_length - low_length))


class RubricScorer:
    """Scores one answer against one ScholarQA-CS metric config with a judge LLM."""

    def __init__(self, llm: Any, *, snippets: bool = True) -> None:
        self.llm = llm
        self.snippets = snippets

    def score_property(self, response: str, question: str, criterion: str) -> float:
        user = f"<question>{question}</question>\n<response>{response}</response>\n<criterion>{criterion}</criterion>"
        obj = extract_json(ask(self.llm, PROPERTY_SYSTEM, user, max_tokens=100))
        try:
            return max(0.0, min(10.0, float(obj["score"]))) / 10.0
        except (TypeError, KeyError, ValueError):
            return 0.0

    def score_citations_excerpts(self, response: str) -> dict[str, float]:
        obj = extract_json(ask(self.llm, "You are a helpful assistant.", CLAIMS_PROMPT.format(response=response),
                               max_tokens=1024))
        try:
            claims = obj["claims"]
            citation_score = sum(1 for c in claims if c["citations"]) / max(len(claims), 1)
            cites = [cit for c in claims for cit in c["citations"]]
            excerpt_score = sum(1 for cit in cites if cit["excerpts"]) / max(len(cites), 1)
        except (TypeError, KeyError):
            return {"citations": 0.0, "excerpts": 0.0}
        return {"citations": float(citation_score), "excerpts": float(excerpt_score)}

    def criterion(self, prop: dict[str, Any]) -> str:
        evidence = prop.get("evidence") or []
        if not (self.snippets and evidence):
            return str(prop["criterion"])
        quotes = "\n".join(f"- {e}" for e in evidence)
        return f"{prop['criterion']}\nExcerpts from the literature that satisfy this criterion:\n{quotes}"

    def score_output(self, response: str, metric_config: dict[str, Any]) -> dict[str, float]:
        cfg = metric_config.get("config", metric_config)
        props = cfg.get("other_properties", [])
        weights = {"length": cfg.get("length_weight", 0.05), "expertise": cfg.get("expertise_weight", 0.05),
                   "citations": cfg.get("citations_weight", 0.2), "excerpts": cfg.get("excerpts_weight", 0.1)}
        weights.update({p["name"]: p["weight"] for p in props})
        if abs(sum(weights.values()) - 1.0) > 1e-6:
            raise ValueError(f"rubric weights sum to {sum(weights.values()):.4f}, not 1")
        question = cfg["question"]
        parts = {"length": score_length(response, cfg.get("low_length", 300), cfg.get("high_length", 600)),
                 "expertise": self.score_property(response, question, EXPERTISE)}
        parts.update(self.score_citations_excerpts(response))
        for p in props:
            parts[p["name"]] = self.score_property(response, question, self.criterion(p))
        return {"score": sum(weights[k] * parts[k] for k in weights), **parts}


def score_rubrics(items: Sequence[dict[str, Any]], llm: Any, *, snippets: bool = True,
                  progress: bool = False) -> dict[str, Any]:
    """Mean rubric score (percent) and its components over items with ``output`` and ``rubric``."""
    from tqdm import tqdm

    scorer = RubricScorer(llm, snippets=snippets)
    results = [scorer.score_output(item["output"], item["rubric"])
               for item in tqdm(items, desc="rubrics", disable=not progress)]
    n = len(results)

    def mean(key: str) -> float:
        return 100.0 * sum(r.get(key, 0.0) for r in results) / n if n else 0.0

    return {"rubric_score": mean("score"), "rubric_length": mean("length"), "rubric_expertise": mean("expertise"),
            "rubric_citations": mean("citations"), "rubric_excerpts": mean("excerpts"),
            "rubric_all": [r["score"] for r in results]}
