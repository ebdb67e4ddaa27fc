"""`openscholar train judge` end to end on a few pairs (slow: builds the data, trains, evaluates the held-apart
pairs), and the training data's guarantees: no overlap with the ScholarQABench SciFact 208, split by group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA


def test_training_data_never_touches_the_208_and_splits_by_group(shared_data):
    from openscholar.judges.support_data import build_judge_pairs, test_claims_and_docs

    data = build_judge_pairs(shared_data / "beir" / "scifact", shared_data / "scholarqabench")
    report = data["report"]["scifact"]
    assert report["claim_text_overlap"] == 0 and report["doc_overlap"] == 0 and report["test_docs_matched"] > 150
    train_groups = {p.group for p in data["train"]}
    dev_groups = {p.group for p in data["dev"]}
    assert train_groups.isdisjoint(dev_groups) and len(dev_groups) > 50
    sources = {p.source for p in data["train"]}
    assert {"scifact-support", "scifact-contradict", "multi-cited", "synth-negate", "synth-reverse"} <= sources
    # Independent check of the 208: no training statement is one of its claims, no evidence is from its abstracts.
    from openscholar.judges.support_data import read_jsonl

    corpus = {d["_id"]: d for d in read_jsonl(shared_data / "beir" / "scifact" / "corpus.jsonl")}
    test_texts, test_docs = test_claims_and_docs(shared_data / "scholarqabench", corpus)
    test_abstracts = {" ".join(corpus[d]["text"].split()) for d in test_docs}
    for p in data["train"] + data["dev"]:
        assert " ".join(p.statement.lower().split()) not in test_texts
        if p.source.startswith("scifact"):
            assert not any(p.evidence in a for a in test_abstracts)


@pytest.mark.slow
def test_train_judge_command_writes_a_loadable_artifact(tmp_path: Path):
    from typer.testing import CliRunner

    from cli.main import app
    from openscholar.judges.trained import TrainedJudge

    out = tmp_path / "judge"
    result = CliRunner().invoke(app, ["train", "judge", "--out", str(out), "--limit", "48", "--epochs", "1", "--json",
                                      "--scifact", str(SHARED_DATA / "beir" / "scifact"),
                                      "--scholarqabench", str(SHARED_DATA / "scholarqabench")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["steps"] == 3 and manifest["labels"] == ["supports", "contradicts", "neither"]
    assert manifest["data"]["scifact_overlap_with_scholarqabench_208"]["doc_overlap"] == 0
    assert (out / "adapter_model.safetensors").is_file() and not (out.parent / ".judge.partial").exists()
    (j,) = TrainedJudge(out).judge([("Aspirin lowers cancer risk.", "T\nAspirin lowered cancer risk by 20%.")])
    assert abs(j.supports + j.contradicts + j.neither - 1.0) < 1e-4  # one window: a distribution
