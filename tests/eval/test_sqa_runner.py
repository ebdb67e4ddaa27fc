"""The runner (resume, modes, prediction format) and the `openscholar eval` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval.scholarqabench.loaders import load_task, task_spec
from eval.scholarqabench.runner import RunError, answer_to_prediction, meta_path, run_predictions
from openscholar.answer import Answer, Reference

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scifact(shared_data: Path):
    return load_task("scifact", root=shared_data / "scholarqabench")


@pytest.fixture()
def engine():
    """The real Engine over the gold passages; a scripted LLM stands in for generation (control flow)."""
    from openscholar.engine import Engine
    from openscholar.llm.scripted import ScriptedLLM
    from openscholar.settings import load_settings

    settings = load_settings(citations={"judge": "lexical"}, llm={"backend": "scripted"}, answer={"mode": "synthesis"})
    return Engine.from_settings(settings, llm=ScriptedLLM())


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_answer_to_prediction_renumbers_citations_to_ctxs_positions() -> None:
    refs = [Reference(id=5, title="B", text="tb"), Reference(id=3, title="A", text="ta", paper_id="p3")]
    ans = Answer(question="q", text="x [5] y [3][5] z [9]", passages=refs, references=refs)
    output, ctxs = answer_to_prediction(ans)
    assert [c["title"] for c in ctxs] == ["A", "B"] and ctxs[0]["paper_id"] == "p3"
    assert output == "x [1] y [0][1] z [11]"  # an unknown id stays out of range


def test_run_resume_and_refusal_to_overwrite(engine, scifact, tmp_path: Path) -> None:
    spec = task_spec("scifact")
    out = tmp_path / "preds.jsonl"
    first = run_predictions(engine, spec, scifact, out, limit=2, progress=False)
    assert (first.written, first.skipped_done, first.total) == (2, 0, 2)
    rows = _lines(out)
    assert [r["input"] for r in rows] == [ex.input for ex in scifact[:2]]
    for r in rows:
        assert r["answer"] in ("true", "false") and r["mode"] == "pipeline"
        assert r["ctxs"] and r["ctxs"][0]["text"] == scifact[rows.index(r)].gold_ctxs[0]["text"]
        assert all(n < len(r["ctxs"]) for n in map(int, __import__("re").findall(r"\[(\d+)", r["output"])))
    with pytest.raises(RunError, match="--resume"):
        run_predictions(engine, spec, scifact, out, limit=3, progress=False)
    with out.open("a") as fh:  # a run killed mid-write
        fh.write('{"input": "' + scifact[2].input[:10])
    second = run_predictions(engine, spec, scifact, out, limit=4, resume=True, progress=False)
    assert (second.written, second.skipped_done) == (2, 2)
    rows = _lines(out)
    assert [r["input"] for r in rows] == [ex.input for ex in scifact[:4]]
    meta = json.loads(meta_path(out).read_text())
    assert meta["settings_fingerprint"] == engine.settings.fingerprint()
    assert meta["written"] == 4 and meta["model"] == "scripted" and meta["passages"] == "gold"


def test_closed_book_and_no_feedback_modes(engine, scifact, tmp_path: Path) -> None:
    spec = task_spec("scifact")
    run_predictions(engine, spec, scifact, tmp_path / "cb.jsonl", mode="closed_book", limit=1, progress=False)
    (cb,) = _lines(tmp_path / "cb.jsonl")
    assert cb["ctxs"] == [] and cb["output"] and cb["mode"] == "closed_book"
    kinds = [k for k, _ in engine.llm.calls]
    run_predictions(engine, spec, scifact, tmp_path / "nf.jsonl", mode="no_feedback", limit=1, progress=False)
    new_kinds = [k for k, _ in engine.llm.calls][len(kinds):]
    assert "feedback" not in new_kinds and "claim" in new_kinds
    with pytest.raises(RunError, match="unknown mode"):
        run_predictions(engine, spec, scifact, tmp_path / "x.jsonl", mode="oracle", progress=False)


def test_score_command_reports_the_benchmark_keys(tmp_path: Path, shared_data: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    preds = tmp_path / "p.jsonl"
    rows = [{"input": "Aspirin F1 lowers risk.", "output": "True [0].", "answer": "true",
             "ctxs": [{"title": "t", "text": "Aspirin lowers risk in this trial."}]},
            {"input": "Statins F2 raise risk.", "output": "True.", "answer": "false", "ctxs": []}]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(REPO)
    res = CliRunner().invoke(app, ["eval", "score", "--task", "scifact", "--predictions", str(preds),
                                   "--json", "--judge", "lexical", "--save", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["n"] == 2 and got["accuracy"] == pytest.approx(50.0)
    assert got["citation_recall"] == pytest.approx(50.0) and got["citation_precision"] == pytest.approx(50.0)
    assert got["judges"] == {"attribution": "lexical"}
    assert "| p | 2 | 50.0 | 50.0 | 50.0 |" in (tmp_path / "r.md").read_text()


def test_malformed_predictions_exit_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "q", "output": "a"}\n')
    proc = subprocess.run([sys.executable, "-m", "cli", "eval", "score", "--task", "scifact",
                           "--predictions", str(bad), "--judge", "lexical"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "line 1: missing 'ctxs'" in proc.stderr and "hint:" in proc.stderr
