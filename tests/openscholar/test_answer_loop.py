"""The self-feedback loop's control flow, driven by a scripted LLM over a real datastore.

Retrieval (MiniLM + FAISS over the small SciFact datastore) and the lexical judge are real; only
the LLM's replies are scripted, so each branch of the loop can be forced and checked.
"""

from __future__ import annotations

import json
import re

import pytest

from openscholar.answer import Answer
from openscholar.answer_steps import AnswerCancelled, accept_edit, parse_feedback
from openscholar.llm.scripted import ScriptedLLM
from openscholar.options import AnswerOptions
from openscholar.prompts import NO_EVIDENCE

REF_LINE = re.compile(r"^\[(\d+)\] Title: (.*?) Text: (.*)$", re.MULTILINE)


def _refs_in_prompt(messages: list[dict[str, str]]) -> dict[str, int]:
    """title -> id as listed in the prompt."""
    return {title: int(n) for n, title, _ in REF_LINE.findall(messages[-1]["content"])}


def _answer_in_prompt(messages: list[dict[str, str]]) -> str:
    m = re.search(r"\nAnswer: (.*?)\n\nFeedback: ", messages[-1]["content"], re.DOTALL)
    assert m, "edit prompt without the answer"
    return m.group(1)


def _assert_citations_resolve(answer: Answer) -> None:
    ids = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    ref_ids = {r.id for r in answer.references}
    assert ids == ref_ids, (ids, ref_ids)
    assert ref_ids <= {p.id for p in answer.passages}


def _other_claim(shared_engine, scifact_subset: dict, question: str) -> tuple[str, dict]:
    """A claim whose gold abstract is not among the question's top-5: feedback must fetch it."""
    shown = {h.passage.paper_id for h in shared_engine.search(question, 5, pipeline="dense")}
    for qid, claim in sorted(scifact_subset["claims"].items()):
        gold = next(iter(scifact_subset["qrels"][qid]))
        if gold not in shown and claim != question:
            top = [h.passage.paper_id for h in shared_engine.search(claim, 3, pipeline="dense")]
            if gold in top:
                return claim, scifact_subset["docs"][gold]
    raise AssertionError("no suitable second claim in the subset")


def test_feedback_retrieval_edits_and_attribution_over_new_passages(shared_engine, scifact_subset):
    question = sorted(scifact_subset["claims"].values())[0]
    other_claim, gold = _other_claim(shared_engine, scifact_subset, question)
    gold_sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z])", gold["text"].strip())[0].rstrip(".")
    seen: dict[str, int] = {}

    def edit_adds_new_evidence(messages):
        ids = _refs_in_prompt(messages)
        seen["gold_id"] = ids[gold["title"]]
        # Uncited sentence copied from the new passage (to be attributed) + a citation to no passage.
        return _answer_in_prompt(messages) + f" {gold_sentence}. Unrelated filler claim about nothing here [99]."

    llm = ScriptedLLM([
        lambda m: None,  # initial answer: the default (first sentences of [0], [1], [2], cited)
        f"Feedback: The answer should also cover related evidence.\nQuestion: {other_claim}\n"
        "Feedback: Make the answer more concise.",
        edit_adds_new_evidence,
        "Too short.",
    ])
    answer = shared_engine.with_llm(llm).answer(question, AnswerOptions(top_k=5))

    assert [k for k, _ in llm.calls] == ["answer", "feedback", "edit", "edit"]
    # feedback parsed, first item asked for retrieval
    assert [f.question for f in answer.feedback] == [other_claim, None]
    steps = [t.step for t in answer.trace]
    assert steps == ["retrieve", "generate", "feedback", "retrieve", "edit", "edit", "verify"]
    new_ids = answer.feedback[0].new_references
    assert new_ids and new_ids == list(range(5, 5 + len(new_ids)))  # numbered after the first five
    assert seen["gold_id"] in new_ids
    # 10% rule: the growing edit kept, the collapsing one rejected
    assert [e.kept for e in answer.edits] == [True, False]
    assert "shrinks" in answer.edits[1].reason
    # attribution over the new passages: the uncited copied sentence now cites the new passage
    copied = next(s for s in answer.sentences if s.text.startswith(gold_sentence[:40]))
    assert copied.citations == [seen["gold_id"]] and copied.attributed and copied.supported
    assert f"[{seen['gold_id']}]" in answer.text
    gold_ref = next(r for r in answer.references if r.id == seen["gold_id"])
    assert gold_ref.paper_id == gold["_id"] and gold_ref.retrieved_for == other_claim
    # a citation id matching no passage is never emitted
    assert "[99]" not in answer.text
    assert any(99 in s.removed for s in answer.sentences)
    _assert_citations_resolve(answer)
    assert answer.usage.calls == 4 and answer.usage.prompt_tokens > 0
    assert set(answer.timings) >= {"retrieve", "generate", "feedback", "edit", "verify", "total"}


def test_no_feedback_items_means_no_edits(shared_engine, scifact_subset):
    question = sorted(scifact_subset["claims"].values())[1]
    llm = ScriptedLLM()
    answer = shared_engine.with_llm(llm).answer(question)
    assert [k for k, _ in llm.calls] == ["answer", "feedback"]
    assert answer.feedback == [] and answer.edits == []
    assert "[0]" in answer.text  # the default scripted answer cites [0], and [0] supports it
    _assert_citations_resolve(answer)
    answer_off = shared_engine.with_llm(ScriptedLLM()).answer(question, AnswerOptions(feedback=False))
    assert [t.step for t in answer_off.trace] == ["retrieve", "generate", "verify"]


def test_unknown_and_unsupported_citations_removed(shared_engine, scifact_subset):
    question = sorted(scifact_subset["claims"].values())[2]
    top = shared_engine.search(question, 3, pipeline="dense")
    first = re.split(r"(?<=[.!?])\s+(?=[A-Z])", top[0].passage.text.strip())[0].rstrip(".")
    reply = (f"{first} [0][7]. The moon is made of green cheese and orbits Jupiter [1].")
    answer = shared_engine.with_llm(ScriptedLLM([reply])).answer(question, AnswerOptions(top_k=3, feedback=False))
    s0, s1 = answer.sentences
    assert s0.citations == [0] and s0.removed == [7] and s0.supported
    assert s1.citations == [] and 1 in s1.removed and not s1.supported
    assert "[7]" not in answer.text and "[1]" not in answer.text
    _assert_citations_resolve(answer)
    # without verification only ids that match no passage go
    raw = shared_engine.with_llm(ScriptedLLM([reply])).answer(question, AnswerOptions(top_k=3, feedback=False, verify=False))
    assert "[7]" not in raw.text and "[1]" in raw.text and "[0]" in raw.text


def test_nothing_relevant_retrieved_says_so(shared_engine, scifact_subset):
    from openscholar.engine import Engine

    settings = shared_engine.settings.model_copy(deep=True)
    settings.answer.min_score = 1.5  # cosine scores never reach it: nothing is relevant
    engine = Engine(settings, llm=ScriptedLLM())
    engine._embedder, engine._datastore = shared_engine._embedder, shared_engine._datastore
    answer = engine.answer(sorted(scifact_subset["claims"].values())[0])
    assert answer.no_evidence and answer.text == NO_EVIDENCE
    assert answer.references == [] and engine.llm.calls == []  # nothing to invent from


def test_context_trimmed_by_whole_passages(shared_engine, scifact_subset):
    from openscholar.engine import Engine

    settings = shared_engine.settings.model_copy(deep=True)
    settings.llm.context_tokens = 300
    settings.answer.max_passage_words = 40
    llm = ScriptedLLM()
    engine = Engine(settings, llm=llm)
    engine._embedder, engine._datastore = shared_engine._embedder, shared_engine._datastore
    answer = engine.answer(sorted(scifact_subset["claims"].values())[0],
                           AnswerOptions(top_k=5, feedback=False, max_tokens=40))
    prompt = llm.calls[0][1][-1]["content"]
    listed = [int(n) for n, _, _ in REF_LINE.findall(prompt)]
    assert 1 <= len(listed) < 5 and listed == list(range(len(listed)))  # a prefix of whole passages
    assert sum(llm.count_tokens(m["content"]) for m in llm.calls[0][1]) + 40 <= 300
    assert {p.id for p in answer.passages} == set(listed)  # only shown passages are in play
    _assert_citations_resolve(answer)


def test_events_and_cancellation(shared_engine, scifact_subset):
    question = sorted(scifact_subset["claims"].values())[0]
    events: list[dict] = []
    shared_engine.with_llm(ScriptedLLM()).answer(question, on_event=events.append)
    pairs = [(e["step"], e["status"]) for e in events]
    assert pairs == [("retrieve", "started"), ("retrieve", "finished"), ("generate", "started"),
                     ("generate", "finished"), ("feedback", "started"), ("feedback", "finished"),
                     ("verify", "started"), ("verify", "finished")]
    assert all(e["elapsed_ms"] > 0 for e in events if e["status"] == "finished")
    seen: list[str] = []

    def on_event(e):
        seen.append(e["step"])

    llm = ScriptedLLM()
    with pytest.raises(AnswerCancelled):
        shared_engine.with_llm(llm).answer(question, on_event=on_event, should_cancel=lambda: "generate" in seen)
    assert "feedback" not in seen and [k for k, _ in llm.calls] == ["answer"]


def test_caller_supplied_passages_skip_retrieval(shared_engine):
    passages = [
        {"title": "Aspirin and colorectal cancer", "text": "Daily aspirin use reduced colorectal cancer incidence "
         "by 24 percent over twenty years of follow-up in randomized trials.", "paper_id": "p-asp", "year": 2010,
         "url": "https://example.org/asp"},
        {"title": "Statins", "text": "Statins lower LDL cholesterol in adults with hypercholesterolemia."},
    ]
    llm = ScriptedLLM([lambda m: None, "Feedback: add more.\nQuestion: aspirin bleeding risk"])
    answer = shared_engine.with_llm(llm).answer(
        "Does aspirin prevent colorectal cancer?", AnswerOptions(passages=passages))
    assert answer.pipeline == "passages" and [t.step for t in answer.trace].count("retrieve") == 1
    assert answer.feedback[0].new_references == []  # no retrieval with caller-supplied passages
    ref0 = next(r for r in answer.references if r.id == 0)
    assert (ref0.paper_id, ref0.passage_id, ref0.year, ref0.url) == ("p-asp", None, 2010, "https://example.org/asp")
    data = json.loads(json.dumps(answer.model_dump(mode="json")))
    assert {"id", "passage_id", "paper_id", "title", "text"} <= set(data["references"][0])
    assert "[0] Aspirin and colorectal cancer (2010)" in answer.to_markdown()
    assert "@misc{p-asp," in answer.to_bibtex() and "year = {2010}" in answer.to_bibtex()


def test_claim_task_verdict(shared_engine, scifact_subset):
    claim = sorted(scifact_subset["claims"].values())[0]
    llm = ScriptedLLM()
    answer = shared_engine.with_llm(llm).answer(claim, AnswerOptions(task="claim", feedback=False))
    assert llm.calls[0][0] == "claim" and answer.verdict == "true"
    llm_no = ScriptedLLM(["False. Nothing supports it."])
    assert shared_engine.with_llm(llm_no).answer(claim, AnswerOptions(task="claim", feedback=False)).verdict == "false"


def test_accept_edit_keeps_the_short_form_verdict():
    before = "True. The trial found fewer fractures with vitamin D [0]."
    assert accept_edit(before, "True. The randomized trial found fewer hip fractures [0].", 0.10, "claim")[0]
    kept, reason = accept_edit(before, "The answer to the question is that the trial found fewer fractures [0].", 0.10, "claim")
    assert not kept and "verdict" in reason
    assert not accept_edit(before, "False. The randomized trial found no fewer hip fractures [0].", 0.10, "claim")[0]
    # long-form answers and drafts without a verdict are judged by length alone
    assert accept_edit(before, "The answer to the question is that the trial found fewer fractures [0].", 0.10)[0]
    assert accept_edit("Maybe, it depends on dosing.", "It depends on the dose given daily.", 0.10, "yes_no")[0]


def test_accept_edit_ten_percent_rule():
    before = "x" * 100
    assert accept_edit(before, "y" * 90, 0.10)[0] is True
    assert accept_edit(before, "y" * 89, 0.10)[0] is False
    assert accept_edit(before, "y" * 300, 0.10)[0] is True
    assert accept_edit(before, "   ", 0.10) == (False, "empty edit")


def test_parse_feedback_formats():
    items = parse_feedback(
        " The answer lacks numbers.\nQuestion: effect size of vitamin D\n\n2. Feedback: Mention the trials.\n"
        "Feedback: none\n**Feedback 3:** Discuss limits.\nQuestion: none\nFeedback: A fourth one."
    )
    assert [(i.feedback, i.question) for i in items] == [
        ("The answer lacks numbers.", "effect size of vitamin D"),
        ("Mention the trials.", None),
        ("Discuss limits.", None),
    ]
    assert parse_feedback("Feedback: none") == []


def _refusing_engine(shared_engine, reply: str):
    """The shared engine's models and datastore, with refuse_unsupported on and a scripted reply."""
    from openscholar.engine import Engine

    settings = shared_engine.settings.model_copy(deep=True)
    settings.answer.refuse_unsupported = True
    engine = Engine(settings, llm=ScriptedLLM([reply]))
    engine._embedder, engine._datastore = shared_engine._embedder, shared_engine._datastore
    return engine


def test_answer_with_no_supported_sentence_is_refused(shared_engine, scifact_subset):
    from openscholar.prompts import UNSUPPORTED

    question = sorted(scifact_subset["claims"].values())[0]
    reply = "Penguins build nests out of volcanic glass on Mars [0]. Quantum bananas sing at dawn [1]."
    answer = _refusing_engine(shared_engine, reply).answer(question, AnswerOptions(feedback=False))
    assert answer.text == UNSUPPORTED and answer.no_evidence and answer.references == []
    assert len(answer.sentences) == 2 and not any(s.supported for s in answer.sentences)
    assert answer.trace[-1].detail["refused"] is True


def test_unsupported_claim_keeps_its_verdict(shared_engine, scifact_subset):
    """A claim answer with no supported sentence keeps its true/false word, flagged as uncited."""
    from openscholar.prompts import UNSUPPORTED_VERDICT

    question = sorted(scifact_subset["claims"].values())[0]
    reply = "False. Penguins build nests out of volcanic glass on Mars and sing at dawn [0]."
    answer = _refusing_engine(shared_engine, reply).answer(question, AnswerOptions(feedback=False, task="claim"))
    assert answer.text == UNSUPPORTED_VERDICT.format(verdict="False")
    assert answer.verdict == "false" and answer.no_evidence and answer.references == []
    assert "[" not in answer.text


# -- time budgets (answer.budgets): a step that runs out returns what it has --------------------------
def _budget_engine(shared_engine, llm, **budgets: float):
    from openscholar.engine import Engine

    settings = shared_engine.settings.model_copy(deep=True)
    settings.answer.budgets = settings.answer.budgets.model_copy(update=budgets)
    engine = Engine(settings, llm=llm)
    engine._embedder, engine._datastore, engine._retrievers = (
        shared_engine._embedder, shared_engine._datastore, shared_engine._retrievers)
    return engine


def test_generation_cut_by_its_budget_keeps_whole_checked_sentences(shared_engine, scifact_subset):
    question = sorted(scifact_subset["claims"].values())[0]
    draft = ("Short first claim about the question here [0]. " + "A much longer second sentence that keeps going "
             "and going well past the point where the time budget of the generation step has run out [1].")
    llm = ScriptedLLM([draft], seconds_per_word=0.02)  # 36 words: 0.72 s; the budget allows 0.2 s (10 words)
    answer = _budget_engine(shared_engine, llm, generate_s=0.2).answer(question, AnswerOptions(feedback=True))
    assert answer.partial and answer.partial_step == "generate"
    assert [t.step for t in answer.trace] == ["retrieve", "generate", "verify"]  # no feedback after running out
    assert "second sentence" not in answer.text and "keeps going" not in answer.text
    assert answer.sentences and answer.sentences[0].text.startswith("Short first claim")
    assert answer.trace[1].detail["out_of_time"] is True


def test_feedback_out_of_time_returns_the_checked_draft(shared_engine, scifact_subset):
    question = sorted(scifact_subset["claims"].values())[0]
    llm = ScriptedLLM([lambda m: None, "Feedback: " + "word " * 200], seconds_per_word=0.001)
    answer = _budget_engine(shared_engine, llm, feedback_s=0.05).answer(question, AnswerOptions())
    assert answer.partial and answer.partial_step == "feedback"
    assert [k for k, _ in llm.calls] == ["answer", "feedback"] and answer.edits == []
    assert answer.trace[-1].step == "verify" and answer.references  # the draft was verified and kept
    _assert_citations_resolve(answer)


def test_nothing_written_in_time_is_an_explicit_partial_answer(shared_engine, scifact_subset):
    from openscholar.prompts import OUT_OF_TIME

    question = sorted(scifact_subset["claims"].values())[0]
    llm = ScriptedLLM(["Anything at all."], seconds_per_word=1.0)
    answer = _budget_engine(shared_engine, llm, generate_s=0.05).answer(question, AnswerOptions())
    assert answer.partial and answer.partial_step == "generate" and answer.text == OUT_OF_TIME
    assert answer.references == [] and len(answer.passages) == 5 and answer.no_evidence


def test_verification_out_of_time_never_shows_an_unchecked_citation(shared_engine, scifact_subset):
    question = sorted(scifact_subset["claims"].values())[0]
    answer = _budget_engine(shared_engine, ScriptedLLM(), verify_s=1e-9).answer(question, AnswerOptions(feedback=False))
    assert answer.partial and answer.partial_step == "verify"
    assert answer.references == [] and not re.search(r"\[\d+\]", answer.text)
    assert all(not s.supported and s.removed for s in answer.sentences)


def test_supplied_passages_are_validated_where_the_request_enters():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="non-empty 'text'"):
        AnswerOptions(passages=[{"title": "t", "text": "   "}])
    with pytest.raises(ValidationError, match="Extra inputs"):
        AnswerOptions(passages=[{"text": "ok", "doi": "10.1/x"}])
    with pytest.raises(ValidationError):
        AnswerOptions(passages=[{"text": "ok", "passage_id": 3}])
    with pytest.raises(ValidationError):
        AnswerOptions(max_tokens=10**6)
    ok = AnswerOptions(passages=[{"text": " kept ", "year": 2001, "authors": ["A. B."]}])
    assert ok.passages is not None and ok.passages[0].text == "kept" and ok.passages[0].authors == ["A. B."]
