"""ScholarQABench subsets: where each lives, how it is read, how it is answered and scored.

``load_task(name, path=None, root=None)`` reads the subset from ``path`` when given (the full
test files, e.g. QASA's ``qasa_test.jsonl``) or from its dev file under ``root`` (the
``corpus.scholarqabench_dir`` setting). Every loader returns ``Example``s with the same fields,
so the runner and the scorers never look at a subset's raw format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from datastore.errors import ErrorKind, ScholarError

Passages = Literal["gold", "retrieval"]


class BenchmarkDataError(ScholarError):
    """A ScholarQABench file is missing or not in the subset's format."""

    kind: ErrorKind = "invalid_input"


@dataclass
class Example:
    """One benchmark question with what scoring needs."""

    id: str
    input: str
    answer: str | None = None  # gold label (SciFact/PubMedQA) or long-form answer (QASA, Multi)
    gold_ctxs: list[dict[str, Any]] = field(default_factory=list)  # passages for the gold-context tasks
    rubric: dict[str, Any] | None = None  # ScholarQA-CS metric config
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """How a subset is answered and scored."""

    name: str
    dev_file: str | None  # relative to the scholarqabench directory; None: a path must be given
    engine_task: Literal["claim", "yes_no", "long_form"]
    passages: Passages
    metrics: tuple[str, ...]
    description: str


TASKS: dict[str, TaskSpec] = {
    "scifact": TaskSpec("scifact", "single_paper_tasks/scifact_test.jsonl", "claim", "gold",
                        ("accuracy", "citations_short", "length"), "SciFact claims, true/false, gold abstract"),
    "pubmedqa": TaskSpec("pubmedqa", "single_paper_tasks/pubmed_dev.jsonl", "yes_no", "gold",
                         ("accuracy", "citations_short", "length"), "PubMedQA questions, yes/no, gold abstract"),
    "qasa": TaskSpec("qasa", None, "long_form", "gold", ("rouge", "citations_long", "length"),
                     "QASA long-form questions over one paper (full file only: pass --input)"),
    "multi": TaskSpec("multi", "scholarqa_multi/human_answers_dev.json", "long_form", "gold",
                      ("prometheus", "citations_long", "length"), "ScholarQA-Multi, expert answers, gold contexts"),
    "cs": TaskSpec("cs", "scholarqa_cs/test_configs_snippets_dev.json", "long_form", "retrieval",
                   ("rubric", "citations_long", "length"), "ScholarQA-CS with expert rubrics"),
    "bio": TaskSpec("bio", "scholarqa_bio/scholarqabench_bio_dev.jsonl", "long_form", "retrieval",
                    ("citations_long", "length"), "ScholarQA-Bio questions (no gold answers)"),
    "neuro": TaskSpec("neuro", "scholarqa_neuro/scholarqabench_neuro_dev.jsonl", "long_form", "retrieval",
                      ("citations_long", "length"), "ScholarQA-Neuro questions (no gold answers)"),
}
ALIASES = {"pubmed": "pubmedqa", "scholarqa_multi": "multi", "scholarqa_cs": "cs", "scholarqa_bio": "bio",
           "scholarqa_neuro": "neuro", "scholarqa-multi": "multi", "scholarqa-cs": "cs", "scholarqa-bio": "bio",
           "scholarqa-neuro": "neuro"}


def task_spec(name: str) -> TaskSpec:
    """The subset named ``name`` (case-insensitive, common aliases accepted)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise BenchmarkDataError(f"unknown ScholarQABench task {name!r}", hint=f"use one of: {', '.join(TASKS)}")
    return TASKS[key]


def read_records(path: Path) -> list[dict[str, Any]]:
    """JSON lines, a JSON list, or a JSON object with a ``data`` list (all forms the benchmark uses)."""
    if not path.is_file():
        raise BenchmarkDataError(f"{path} does not exist", hint="check the path or corpus.scholarqabench_dir")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
            records = data["data"] if isinstance(data, dict) and "data" in data else data
    except (json.JSONDecodeError, KeyError) as exc:
        raise BenchmarkDataError(f"{path} is not valid JSON/JSONL ({exc})", hint="pass the benchmark's file") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BenchmarkDataError(f"{path} does not hold a list of records", hint="pass the benchmark's file")
    return records


def _ctx(doc: dict[str, Any]) -> dict[str, Any]:
    out = {"title": str(doc.get("title") or ""), "text": str(doc.get("text") or "")}
    for key in ("url", "year", "paper_id", "corpus_id"):
        if doc.get(key) is not None:
            out[key] = doc[key]
    return out


def _require(record: dict[str, Any], keys: tuple[str, ...], path: Path, i: int, task: str) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise BenchmarkDataError(
            f"{path} record {i} lacks {', '.join(missing)} (not a {task} file?)",
            hint=f"pass the {task} file of ScholarQABench",
        )


def _convert(spec: TaskSpec, record: dict[str, Any], i: int, path: Path) -> Example:
    name = spec.name
    if name == "cs":
        _require(record, ("initial_prompt", "metric_config"), path, i, name)
        return Example(id=str(record.get("case_id", i)), input=record["initial_prompt"],
                       rubric=record["metric_config"], extra={"annotator": record.get("annotator")})
    _require(record, ("input",), path, i, name)
    ex = Example(id=str(record.get("id", i)), input=record["input"])
    if name in ("scifact", "pubmedqa"):
        _require(record, ("answer", "gold_ctx"), path, i, name)
        ex.answer = str(record["answer"])
        ex.gold_ctxs = [_ctx(d) for d in record["gold_ctx"]]
    elif name == "qasa":
        _require(record, ("answer",), path, i, name)
        ex.answer = str(record["answer"])
        ex.gold_ctxs = [_ctx(d) for d in (record.get("ctxs") or record.get("gold_ctxs") or [])]
    elif name == "multi":
        _require(record, ("ctxs",), path, i, name)
        ex.answer = record.get("output")  # the expert's answer: the Prometheus reference
        ex.gold_ctxs = [_ctx(d) for d in record["ctxs"]]
        ex.extra = {"subject": record.get("subject"), "annotator": record.get("annotator")}
    return ex


def load_task(name: str, path: str | Path | None = None, root: str | Path | None = None) -> list[Example]:
    """The examples of subset ``name`` from ``path``, or from its dev file under ``root``."""
    spec = task_spec(name)
    if path is None:
        if spec.dev_file is None:
            raise BenchmarkDataError(f"task {spec.name} has no dev file in the shared data",
                                     hint="pass the full file with --input")
        if root is None:
            raise BenchmarkDataError("no ScholarQABench directory configured",
                                     hint="set corpus.scholarqabench_dir or pass --input")
        path = Path(root).expanduser() / spec.dev_file
    path = Path(path).expanduser()
    records = read_records(path)
    return [_convert(spec, r, i, path) for i, r in enumerate(records)]


def load_prometheus_rubrics(path: str | Path) -> list[dict[str, Any]]:
    """The five-point rubrics (organization, coverage, relevance) of ``prometheus_rubrics_v8.json``."""
    rubrics = read_records(Path(path))
    needed = ("criteria_description", "aspect", *(f"score{i}_description" for i in range(1, 6)))
    for i, r in enumerate(rubrics):
        _require(r, needed, Path(path), i, "Prometheus rubric")
    return rubrics
