"""Loaders over the shared data, prediction-file validation, and the judge adapter's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.judges import AttrScoreJudge, JudgeError, build_attribution_judge, judge_id
from eval.scholarqabench.loaders import (
    BenchmarkDataError,
    load_prometheus_rubrics,
    load_task,
    task_spec,
)
from eval.scholarqabench.predictions import PredictionsError, done_inputs, read_predictions


@pytest.fixture(scope="module")
def sqa_dir(shared_data: Path) -> Path:
    root = shared_data / "scholarqabench"
    if not root.is_dir():
        pytest.skip("no ScholarQABench data")
    return root


@pytest.mark.parametrize(("task", "count"), [("scifact", 208), ("pubmedqa", 200), ("multi", 40), ("cs", 30),
                                             ("bio", 200), ("neuro", 200)])
def test_every_dev_subset_loads(sqa_dir: Path, task: str, count: int) -> None:
    examples = load_task(task, root=sqa_dir)
    assert len(examples) == count
    assert all(ex.input.strip() for ex in examples)
    spec = task_spec(task)
    if task in ("scifact", "pubmedqa"):
        assert {ex.answer for ex in examples} == ({"true", "false"} if task == "scifact" else {"yes", "no"})
        assert all(len(ex.gold_ctxs) == 1 and ex.gold_ctxs[0]["text"] for ex in examples)
    if task == "multi":
        assert all(ex.gold_ctxs and ex.answer for ex in examples)
    if task == "cs":
        weights = [sum(p["weight"] for p in ex.rubric["config"]["other_properties"]) for ex in examples]
        assert all(abs(w - 0.6) < 1e-6 for w in weights)
    assert spec.passages == ("retrieval" if task in ("cs", "bio", "neuro") else "gold")


def test_prometheus_rubrics_load(sqa_dir: Path) -> None:
    rubrics = load_prometheus_rubrics(sqa_dir / "rubrics" / "prometheus_rubrics_v8.json")
    assert [r["aspect"] for r in rubrics] == ["organization", "coverage", "relevance"]


def test_qasa_needs_a_file_and_reads_the_full_format(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkDataError, match="--input"):
        load_task("qasa", root=tmp_path)
    f = tmp_path / "qasa_test.jsonl"
    f.write_text(json.dumps({"input": "Q?", "answer": "A long answer.", "ctxs": [{"title": "P", "text": "T"}],
                             "gold_ctxs": [{"title": "P", "text": "T"}]}) + "\n")
    (ex,) = load_task("qasa", f)
    assert (ex.input, ex.answer, ex.gold_ctxs[0]["text"]) == ("Q?", "A long answer.", "T")
    with pytest.raises(BenchmarkDataError, match="unknown ScholarQABench task"):
        task_spec("nope")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "no input key"}) + "\n")
    with pytest.raises(BenchmarkDataError, match="lacks input"):
        load_task("bio", bad)


def test_malformed_predictions_give_clear_errors(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    good = {"input": "q", "output": "a [0]", "ctxs": [{"title": "t", "text": "x"}]}
    f.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(PredictionsError, match="line 2 is not valid JSON"):
        read_predictions(f)
    f.write_text(json.dumps({"input": "q", "ctxs": []}) + "\n")
    with pytest.raises(PredictionsError, match="line 1: missing 'output'"):
        read_predictions(f)
    f.write_text(json.dumps({"input": "q", "output": "a"}) + "\n")
    with pytest.raises(PredictionsError, match="missing 'ctxs'"):
        read_predictions(f)
    f.write_text(json.dumps({"input": "q", "output": 3, "ctxs": []}) + "\n")
    with pytest.raises(PredictionsError, match="'output' must be a string"):
        read_predictions(f)
    f.write_text(json.dumps({"input": "q", "output": "a", "ctxs": ["just text"]}) + "\n")
    with pytest.raises(PredictionsError, match="'ctxs' must be a list of objects"):
        read_predictions(f)
    f.write_text("\n")
    with pytest.raises(PredictionsError, match="holds no predictions"):
        read_predictions(f)
    with pytest.raises(PredictionsError, match="does not exist"):
        read_predictions(tmp_path / "missing.jsonl")
    # the benchmark's other accepted forms: a JSON list, {"data": [...]}, ctxs as {id: [text, title]}
    f.write_text(json.dumps([good]))
    assert read_predictions(f)[0]["output"] == "a [0]"
    f.write_text(json.dumps({"data": [dict(good, ctxs={"a": ["x", "t"]})]}))
    assert read_predictions(f)[0]["ctxs"] == [{"text": "x", "title": "t"}]


def test_done_inputs_ignores_a_cut_off_last_line(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"input": "a", "output": "x", "ctxs": []}) + "\n" + '{"input": "b", "outp')
    assert done_inputs(f) == {"input:a"}
    f.write_text('{"input": "b", "outp\n' + json.dumps({"input": "a", "output": "x", "ctxs": []}) + "\n")
    with pytest.raises(PredictionsError, match="line 1"):
        done_inputs(f)


def test_attribution_judge_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from openscholar.settings import load_settings

    s = load_settings()
    lexical = build_attribution_judge(s, "lexical")
    assert judge_id(lexical) == "lexical"
    assert lexical.score([("F1 holds in mice", "we show F1 holds in mice")])[0] > 0.5
    attr = build_attribution_judge(s, "osunlp/attrscore-flan-t5-xl")
    assert isinstance(attr, AttrScoreJudge) and judge_id(attr) == "osunlp/attrscore-flan-t5-xl"
    with pytest.raises(JudgeError, match="unknown attribution judge"):
        build_attribution_judge(s, "gpt-judge")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(JudgeError, match="cannot load the attribution model"):
        AttrScoreJudge("openscholar-test/no-such-attrscore").warm_up()


def test_resume_keys_on_the_example_id_so_repeated_inputs_are_all_answered(tmp_path: Path, sqa_dir: Path) -> None:
    """SciFact's ScholarQABench file repeats 21 claims with other evidence: each one is its own example."""
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"input": "a", "id": "0", "output": "x", "ctxs": []}) + "\n")
    assert done_inputs(f) == {"id:0"}
    from eval.scholarqabench.loaders import load_task
    from eval.scholarqabench.predictions import prediction_key

    examples = load_task("scifact", None, sqa_dir)
    assert len(examples) == 208 and len({e.input for e in examples}) < 208
    assert len({prediction_key(e.id, e.input) for e in examples}) == 208
