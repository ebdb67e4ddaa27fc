"""Corpus sources: formats, tolerance of unknown fields, malformed lines counted or fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datastore.errors import SourceError
from datastore.sources import BeirSource, JsonlSource, ScholarQABenchSource, open_source


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_pes2o_jsonl_fields_and_unknown_fields(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "papers.jsonl",
        [
            json.dumps({"id": 7, "title": "A", "text": "alpha beta", "year": "2020", "venue": "Nature",
                        "authors": [{"name": "Ada L"}, "Bob K"], "url": "https://x/7", "citation_count": 12,
                        "whatever": {"nested": True}}),
            json.dumps({"paper_id": "p2", "title": "B", "abstract": "gamma", "authors": "C D, E F"}),
        ],
    )
    papers = list(JsonlSource(path))
    assert [p.paper_id for p in papers] == ["7", "p2"]
    assert papers[0].year == 2020 and papers[0].venue == "Nature" and papers[0].citation_count == 12
    assert papers[0].authors == ("Ada L", "Bob K")
    assert papers[1].text == "gamma" and papers[1].authors == ("C D", "E F")


def test_malformed_lines_are_skipped_counted_and_located(tmp_path: Path) -> None:
    good = json.dumps({"id": "1", "title": "T", "text": "x"})
    path = _write(tmp_path / "p.jsonl", [good, "{not json", good.replace('"1"', '"2"'), "[1, 2]", json.dumps({"title": "no id"})])
    src = JsonlSource(path)
    assert [p.paper_id for p in src] == ["1", "2"]
    assert src.stats.malformed == 3
    assert src.stats.malformed_lines == [2, 4, 5]
    assert "first at lines [2, 4, 5]" in src.stats.summary()


def test_strict_fails_on_first_malformed_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", [json.dumps({"id": "1", "title": "T", "text": "x"}), "oops"])
    with pytest.raises(SourceError, match="line 2"):
        list(JsonlSource(path, strict=True))


def test_beir_directory_keeps_doc_ids(shared_data: Path) -> None:
    src = BeirSource(shared_data / "beir" / "scifact")
    first = next(iter(src))
    assert first.paper_id == "4983" and first.title.startswith("Microstructural development")
    assert first.source == "beir"


def test_beir_directory_without_corpus_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a BEIR directory"):
        BeirSource(tmp_path)


def test_scholarqabench_contexts_string_and_pubmed_records(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "pubmed.jsonl",
        [
            json.dumps({"input": "q1", "gold_ctx": [{"title": "T1", "text": {"contexts": ["Part one.", "Part two."]}}]}),
            json.dumps({"input": "q2", "ctxs": [{"title": "T2", "text": "Plain text.", "year": 2019, "url": "u"}, {"title": "x"}]}),
        ],
    )
    src = ScholarQABenchSource(path)
    papers = list(src)
    assert [p.text for p in papers] == ["Part one. Part two.", "Plain text."]
    assert papers[1].year == 2019 and papers[1].url == "u"
    assert papers[0].paper_id.startswith("ctx:") and papers[0].paper_id != papers[1].paper_id
    assert src.stats.malformed == 1  # the context without text


def test_open_source_detects_kinds(tmp_path: Path, shared_data: Path) -> None:
    assert isinstance(open_source(str(shared_data / "beir" / "scifact")), BeirSource)
    sqa = shared_data / "scholarqabench" / "single_paper_tasks" / "scifact_test.jsonl"
    assert isinstance(open_source(str(sqa)), ScholarQABenchSource)
    plain = _write(tmp_path / "p.jsonl", [json.dumps({"id": "1", "title": "T", "text": "x"})])
    assert isinstance(open_source(str(plain)), JsonlSource)
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "missing.jsonl"))
