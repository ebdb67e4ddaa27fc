"""`openscholar ask "QUESTION"`: a checked, cited answer with a live display of the steps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, get_args

import typer
from rich.live import Live
from rich.table import Table

from cli.common import err, out, print_json, settings

STEP_LABELS = {
    "retrieve": "retrieve passages",
    "generate": "write the answer",
    "feedback": "self-feedback",
    "edit": "edit for feedback",
    "verify": "check citations",
    "evidence": "select quotes",
}


def _read_passages(path: Path) -> list[dict[str, Any]]:
    """A JSON list of passages, or JSONL (one passage per line); each needs at least ``text``."""
    if not path.is_file():
        raise typer.BadParameter(f"{path} does not exist", param_hint="--passages")
    raw = path.read_text(encoding="utf-8").strip()
    try:
        data = json.loads(raw) if raw.startswith("[") else [json.loads(line) for line in raw.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{path} is not JSON or JSONL ({exc})", param_hint="--passages") from exc
    if not isinstance(data, list) or not all(isinstance(x, dict) and str(x.get("text", "")).strip() for x in data):
        raise typer.BadParameter("expected a list of objects with a non-empty 'text' (and 'title')", param_hint="--passages")
    return data


class StepDisplay:
    """Rows of steps on stderr: live-updating on a terminal, one line per finished step otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.rows: list[list[str]] = []
        self.open: dict[str, int] = {}
        self.live: Live | None = None
        self.t0 = time.perf_counter()

    def __enter__(self) -> StepDisplay:
        if self.enabled and err.is_terminal:
            self.live = Live(self._table(), console=err, refresh_per_second=8, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(*exc)

    def _table(self) -> Table:
        table = Table(show_header=False, box=None, pad_edge=False)
        for row in self.rows:
            table.add_row(*row)
        return table

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        step, detail = event["step"], event.get("detail") or {}
        label = STEP_LABELS.get(step, step)
        if "feedback_index" in detail:
            label += f" #{detail['feedback_index'] + 1}"
        if event["status"] == "started":
            self.open[label] = len(self.rows)
            self.rows.append(["[yellow]…[/]", label, "", _summary(step, detail, started=True)])
        else:
            row = self.rows[self.open.pop(label, len(self.rows) - 1)]
            row[0], row[2], row[3] = "[green]✓[/]", f"{event['elapsed_ms'] / 1000:.1f}s", _summary(step, detail)
            if self.live is None:
                err.print(f"✓ {label:<22} {row[2]:>7}  {row[3]}", highlight=False)
        if self.live is not None:
            self.live.update(self._table())


def _summary(step: str, d: dict[str, Any], started: bool = False) -> str:
    if started:
        return str(d.get("query", ""))[:70] if step == "retrieve" else ""
    if step == "retrieve":
        n = d.get("passages", len(d.get("new_references", [])))
        return f"{n} passages" + (f" via {d['pipeline']}" if d.get("pipeline") else "")
    if step == "generate":
        return f"{d.get('chars', 0)} chars, cites {d.get('citations', [])}"
    if step == "feedback":
        items = d.get("items", [])
        return f"{len(items)} items, {sum(1 for i in items if i.get('question'))} ask for more retrieval"
    if step == "edit":
        return f"{'kept' if d.get('kept') else 'rejected'}: {d.get('reason', '')}"
    if step == "verify":
        if not d.get("checked", True):
            return "not checked (no judge): citations of unknown passages removed only"
        added = d.get("added") or {}
        added_text = ("; verification added " + ", ".join(f"{ids} to sentence {int(i) + 1}" for i, ids in added.items())
                      if added else "; none added")
        return (f"{d.get('supported', 0)} supported, {d.get('unsupported', 0)} unsupported, {d.get('contradicted', 0)} "
                f"contradicted of {d.get('sentences', 0)} sentences; {d.get('removed', 0)} citations removed{added_text}")
    if step == "evidence":
        verdict = f"; verdict: {d['verdict']}" if d.get("verdict") else ""
        counts = [_count(d.get(key, 0), key[:-1]) for key in ("quotes", "papers", "sections")]
        return f"{counts[0]} from {counts[1]} in {counts[2]}{verdict}"
    return ""


def ask(
    ctx: typer.Context,
    question: str = typer.Argument(..., help="The question (or claim with --task claim)."),
    datastore: Path = typer.Option(None, "--datastore", help="Datastore directory (default: datastore.path)."),
    as_json: bool = typer.Option(False, "--json", help="Print the Answer as JSON on stdout."),
    as_markdown: bool = typer.Option(False, "--markdown", help="Print markdown with a references list."),
    bibtex: bool = typer.Option(False, "--bibtex", help="Print BibTeX entries of the cited papers."),
    no_feedback: bool = typer.Option(False, "--no-feedback", help="Skip the self-feedback loop."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip citation verification (unknown ids are still dropped)."),
    passages: Path = typer.Option(None, "--passages", help="Answer from these passages (JSON list or JSONL) instead of retrieving."),
    task: str = typer.Option("long_form", "--task", help="long_form | claim | yes_no."),
    mode: str = typer.Option(None, "--mode", help="evidence (quotes, no LLM) | synthesis (the LLM writes) | auto "
                             "(default: pipeline.mode)."),
    top_k: int = typer.Option(None, "--top-k", min=1, max=100, help="Passages shown to the model."),
    pipeline: str = typer.Option(None, "--pipeline", help="Retrieval pipeline (default: retrieval.pipeline)."),
    llm: str = typer.Option(None, "--llm", help="LLM backend: transformers | openai | scripted (default: llm.backend)."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help="Completion budget per LLM call."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No step display."),
) -> None:
    """Answer a question from the literature with checked citations."""
    from pydantic import ValidationError

    from openscholar.answer import Task
    from openscholar.config import AnswerMode
    from openscholar.engine import Engine
    from openscholar.llm import LLMS
    from openscholar.options import AnswerOptions

    if not question.strip():
        raise typer.BadParameter("the question is empty", param_hint="QUESTION")
    if as_json and (as_markdown or bibtex):
        raise typer.BadParameter("--json cannot be combined with --markdown or --bibtex", param_hint="--json")
    if task not in get_args(Task):
        raise typer.BadParameter(f"use one of: {', '.join(get_args(Task))}", param_hint="--task")
    if mode is not None and mode not in get_args(AnswerMode):
        raise typer.BadParameter(f"use one of: {', '.join(get_args(AnswerMode))}", param_hint="--mode")
    s = settings(ctx)
    if datastore is not None:
        s.datastore.path = datastore
    if llm is not None:
        if llm not in LLMS:
            raise typer.BadParameter(f"use one of: {', '.join(LLMS.names())}", param_hint="--llm")
        s.llm.backend = llm  # type: ignore[assignment]
    try:
        options = AnswerOptions(
            feedback=not no_feedback, verify=not no_verify, top_k=top_k, pipeline=pipeline,  # type: ignore[arg-type]
            passages=_read_passages(passages) if passages is not None else None, task=task,  # type: ignore[arg-type]
            max_tokens=max_tokens, mode=mode,  # type: ignore[arg-type]
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems, param_hint="--passages/--pipeline/--max-tokens") from None
    engine = Engine.from_settings(s)
    with StepDisplay(enabled=not quiet) as display:
        answer = engine.answer(question, options, on_event=display)
    if as_json:
        print_json(answer.model_dump(mode="json"))
        return
    if bibtex:
        out.print(answer.to_bibtex(), highlight=False, markup=False)
        return
    if as_markdown or not out.is_terminal:
        out.print(answer.to_markdown(), highlight=False, markup=False)
        return
    from rich.markdown import Markdown

    out.print(Markdown(answer.to_markdown()))
    err.print(f"[dim]{answer.usage.prompt_tokens} prompt + {answer.usage.completion_tokens} completion tokens, "
              f"{answer.timings.get('total', 0) / 1000:.1f}s[/]")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    app.command("ask")(ask)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
