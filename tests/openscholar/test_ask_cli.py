"""`openscholar ask`: JSON whose citations all resolve, on a real datastore; errors that name the endpoint."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]


def _check_answer_json(data: dict, datastore: Path | None) -> None:
    """Every [n] in the text is a reference id; references carry passage/paper ids, title, text."""
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", data["text"])}
    refs = {r["id"]: r for r in data["references"]}
    assert cited == set(refs), (cited, set(refs))
    for ref in data["references"]:
        assert {"id", "passage_id", "paper_id", "title", "text"} <= set(ref)
    if datastore is not None and refs:
        from datastore.datastore import Datastore

        ds = Datastore.open(datastore)
        stored = {p.passage_id: p for p in ds.get([r["passage_id"] for r in refs.values()])}
        for ref in refs.values():
            assert stored[ref["passage_id"]].text == ref["text"]
            assert stored[ref["passage_id"]].paper_id == ref["paper_id"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSCHOLAR_")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    env.update(extra)
    return env


def test_ask_json_with_scripted_llm(small_datastore: Path, scifact_subset: dict, monkeypatch):
    from cli.main import app

    for key, value in _env(OPENSCHOLAR_RETRIEVAL__PIPELINE="dense", OPENSCHOLAR_CITATIONS__JUDGE="lexical").items():
        if key.startswith("OPENSCHOLAR_"):
            monkeypatch.setenv(key, value)
    claim = sorted(scifact_subset["claims"].values())[0]
    result = CliRunner().invoke(app, ["ask", claim, "--datastore", str(small_datastore), "--llm", "scripted", "--json",
                                      "--top-k", "4", "--mode", "synthesis"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["question"] == claim and data["references"] and "[0]" in data["text"] and data["mode"] == "synthesis"
    assert [t["step"] for t in data["trace"]] == ["retrieve", "generate", "feedback", "verify"]
    verify = data["trace"][-1]["detail"]
    assert verify["supported"] + verify["unsupported"] + verify["contradicted"] == verify["sentences"] > 0
    assert all(s["status"] in ("supported", "unsupported", "contradicted") for s in data["sentences"])
    _check_answer_json(data, small_datastore)


@pytest.mark.parametrize("mode", ["evidence", "auto"])
def test_ask_json_in_evidence_mode(small_datastore: Path, scifact_subset: dict, monkeypatch, mode: str):
    """No LLM call at all: verbatim quotes (checked against the datastore), themed sections, and for a claim the
    judge's verdict. auto picks evidence for the small local default model."""
    from cli.main import app

    for key, value in _env(OPENSCHOLAR_RETRIEVAL__PIPELINE="dense", OPENSCHOLAR_CITATIONS__JUDGE="lexical").items():
        if key.startswith("OPENSCHOLAR_"):
            monkeypatch.setenv(key, value)
    claim = sorted(scifact_subset["claims"].values())[0]
    result = CliRunner().invoke(app, ["ask", claim, "--datastore", str(small_datastore), "--json", "--top-k", "5",
                                      "--task", "claim", "--mode", mode], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "evidence" and data["usage"]["calls"] == 0 and data["model"] == ""
    assert [t["step"] for t in data["trace"]] == ["retrieve", "evidence"]
    assert 3 <= len(data["evidence"]) <= 8 and data["sections"]
    passages = {p["id"]: p for p in data["passages"]}
    for e in data["evidence"]:
        assert passages[e["reference"]]["text"][e["start"]:e["end"]] == e["quote"]
        assert f"\u201c{e['quote']}\u201d [{e['reference']}]" in data["text"]
    assert data["assessment"]["label"] in ("supported", "contradicted", "not enough evidence")
    assert data["assessment"]["statement"] == claim
    _check_answer_json(data, small_datastore)


def test_ask_markdown_from_passages_file(tmp_path: Path, monkeypatch):
    from cli.main import app

    monkeypatch.setenv("OPENSCHOLAR_CITATIONS__JUDGE", "lexical")
    passages = tmp_path / "p.jsonl"
    passages.write_text(json.dumps({"title": "Bees", "text": "Honey bees communicate food locations with a waggle dance.",
                                    "paper_id": "bee-1", "year": 1967}) + "\n")
    result = CliRunner().invoke(app, ["ask", "How do bees share where food is?", "--passages", str(passages),
                                      "--llm", "scripted", "--markdown", "--no-feedback", "-q", "--mode", "synthesis"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Honey bees communicate food locations with a waggle dance [1]." in result.stdout  # numbered from 1
    assert "[1] Bees (1967). Paper bee-1." in result.stdout


def test_ask_unreachable_llm_names_the_endpoint(tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    passages = tmp_path / "p.json"
    passages.write_text(json.dumps([{"title": "T", "text": "Some finding about cells."}]))
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "ask", "What about cells?", "--passages", str(passages), "--llm",
         "openai", "-q", "--mode", "synthesis"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env=_env(OPENSCHOLAR_LLM__BASE_URL=f"http://127.0.0.1:{port}/v1", OPENSCHOLAR_LLM__MAX_RETRIES="0"),
    )
    assert proc.returncode == 2, proc.stderr
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in proc.stderr and "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.llm
@pytest.mark.slow
def test_ask_json_with_smollm2_on_a_real_datastore(small_datastore: Path, scifact_subset: dict):
    """The default local model (packaged SmolLM2 GGUF) and the default (trained) judge, end to end."""
    claim = sorted(scifact_subset["claims"].values())[3]
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "ask", claim, "--datastore", str(small_datastore), "--json",
         "--llm", "transformers", "--no-feedback", "--top-k", "3", "--max-tokens", "96", "--mode", "synthesis"],
        capture_output=True, text=True, timeout=900, cwd=REPO,
        env=_env(OPENSCHOLAR_RETRIEVAL__PIPELINE="dense", OPENSCHOLAR_CITATIONS__JUDGE="trained"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and data["usage"]["completion_tokens"] > 0
    assert data["judge"] == "trained" and len(data["passages"]) == 3
    assert "check citations" in proc.stderr  # the step display went to stderr, not into the JSON
    _check_answer_json(data, small_datastore)
