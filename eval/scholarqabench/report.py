"""Reports of ScholarQABench runs: JSON plus a markdown table, one row per run (mode), with the
settings hash, model ids, judge ids, counts and time, so a figure can always be traced back."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.scholarqabench.runner import meta_path

COLUMNS = (  # (key, header, format)
    ("accuracy", "accuracy (%)", "{:.1f}"),
    ("citation_precision", "cite prec (%)", "{:.1f}"),
    ("citation_recall", "cite rec (%)", "{:.1f}"),
    ("rougeL", "ROUGE-L (%)", "{:.1f}"),
    ("rubric_score", "rubric (%)", "{:.1f}"),
    ("prometheus_organization", "org (1-5)", "{:.2f}"),
    ("prometheus_coverage", "cov (1-5)", "{:.2f}"),
    ("prometheus_relevance", "rel (1-5)", "{:.2f}"),
    ("length", "length (words)", "{:.1f}"),
)


def read_meta(predictions: str | Path) -> dict[str, Any]:
    path = meta_path(predictions)
    return json.loads(path.read_text()) if path.is_file() else {}


def run_entry(label: str, predictions: str | Path, scores: dict[str, Any],
              items: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """One row: the scores of a predictions file plus what produced it (from its .meta.json)."""
    meta = read_meta(predictions)
    times = sorted(float(it["elapsed_s"]) for it in items if isinstance(it.get("elapsed_s"), (int, float)))
    median = times[len(times) // 2] if times else None
    return {"label": label, "predictions": str(predictions), "mode": meta.get("mode"), "model": meta.get("model"),
            "settings_fingerprint": meta.get("settings_fingerprint"), "answer_time_s": meta.get("elapsed_s"),
            "median_s_per_question": median, "pipeline_judge": meta.get("judge") or None, "scores": scores}


def build_report(task: str, runs: Sequence[dict[str, Any]], *, note: str = "") -> dict[str, Any]:
    judges = sorted({f"{role}: {jid}" for r in runs for role, jid in r["scores"].get("judges", {}).items()})
    return {"task": task, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": platform.node(), "judges": judges, "note": note, "runs": list(runs)}


def _cell(value: Any, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def to_markdown(report: dict[str, Any]) -> str:
    """A table with a row per run and only the metric columns some run has."""
    runs = report["runs"]
    cols = [c for c in COLUMNS if any(r["scores"].get(c[0]) is not None for r in runs)]
    head = ["run", "n", *[c[1] for c in cols], "model", "settings", "median s/question"]
    lines = [f"### {report['task']}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        s = r["scores"]
        row = [r["label"], str(s.get("n", "")), *[_cell(s.get(k), f) for k, _, f in cols], str(r.get("model") or "–"),
               str(r.get("settings_fingerprint") or "–"), _cell(r.get("median_s_per_question"), "{:.0f}")]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if report.get("judges"):
        lines.append("Judges: " + "; ".join(report["judges"]) + ".")
    splitters = sorted({r["scores"].get("sentence_splitter") for r in runs if r["scores"].get("sentence_splitter")})
    if splitters:
        lines.append("Sentence splitter: " + ", ".join(splitters) + ".")
    unparsed = {r["label"]: r["scores"]["prometheus_unparsed"] for r in runs if r["scores"].get("prometheus_unparsed")}
    if unparsed:
        lines.append("Prometheus replies without a [RESULT] grade (left out of the means): "
                     + ", ".join(f"{k} {v}" for k, v in unparsed.items()) + ".")
    if report.get("notes") or any(r["scores"].get("notes") for r in runs):
        for note in sorted({n for r in runs for n in r["scores"].get("notes", [])}):
            lines.append(f"Note: {note}.")
    if report.get("note"):
        lines.append(report["note"])
    return "\n".join(lines) + "\n"


def save_report(report: dict[str, Any], json_path: str | Path, md_path: str | Path | None = None) -> None:
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, default=str))
    if md_path is not None:
        Path(md_path).write_text(to_markdown(report))
