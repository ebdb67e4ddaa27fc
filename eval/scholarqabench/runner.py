"""Answer a ScholarQABench subset and write predictions in the benchmark's format.

Three modes, so one report can compare them on the same questions:

- ``pipeline``: the service as configured (retrieval or gold passages, self-feedback, citation
  verification);
- ``no_feedback``: the same passages, one generation, no feedback and no verification;
- ``closed_book``: the same LLM with no passages at all.

Single-paper tasks (SciFact, PubMedQA, QASA) and ScholarQA-Multi answer from their gold contexts;
CS, Bio and Neuro retrieve from the datastore. Each answered question is appended to the output at
once; ``resume`` skips inputs already there. Runs are sequential in this process (the Celery fan-out
over workers is not wired: the api package has no answer task to submit to yet).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from datastore.errors import ErrorKind, ScholarError
from eval.scholarqabench.baselines import closed_book_answer
from eval.scholarqabench.loaders import Example, TaskSpec
from eval.scholarqabench.predictions import (
    append_predictions,
    done_inputs,
    prediction_key,
    truncate_partial_line,
)

log = logging.getLogger(__name__)
Mode = Literal["pipeline", "no_feedback", "closed_book"]
MODES: tuple[str, ...] = ("pipeline", "no_feedback", "closed_book")
_CITE = re.compile(r"\[(\d+)\]")


class RunError(ScholarError):
    kind: ErrorKind = "conflict"


@dataclass
class RunSummary:
    task: str
    mode: str
    output: str
    total: int
    passages: str = ""
    skipped_done: int = 0
    written: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    model: str = ""
    judge: str = ""
    settings_fingerprint: str = ""
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def answer_to_prediction(answer: Any) -> tuple[str, list[dict[str, Any]]]:
    """(output, ctxs) from an ``Answer``: ctxs are the passages in play ordered by id, and every
    ``[n]`` is rewritten to the 0-based position of passage ``n`` in ctxs (identity when the ids
    already are 0..N-1); a citation of an unknown id is kept, so the scorer counts it out of range."""
    passages = sorted(answer.passages or answer.references, key=lambda p: p.id)
    position = {p.id: i for i, p in enumerate(passages)}
    ctxs = []
    for p in passages:
        ctx: dict[str, Any] = {"title": p.title or "", "text": p.text or ""}
        for key in ("paper_id", "url", "year"):
            if getattr(p, key, None) is not None:
                ctx[key] = getattr(p, key)
        ctxs.append(ctx)

    def remap(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return f"[{position[n]}]" if n in position else f"[{len(ctxs) + n}]"

    return _CITE.sub(remap, answer.text), ctxs


def _options(spec: TaskSpec, example: Example, mode: str, max_tokens: int | None) -> Any:
    from openscholar.options import AnswerOptions

    passages = None
    if spec.passages == "gold":
        passages = [_supplied(c) for c in example.gold_ctxs if str(c.get("text") or "").strip()]
        if not passages:
            raise RunError(f"example {example.id} of {spec.name} has no gold contexts", hint="check the input file")
    fb = mode == "pipeline"
    return AnswerOptions(passages=passages, task=spec.engine_task, feedback=fb, verify=fb, max_tokens=max_tokens)


def _supplied(ctx: dict[str, Any]) -> Any:
    """A benchmark context as a caller-supplied passage (its corpus id, if any, as the paper id)."""
    from openscholar.options import SuppliedPassage

    paper = ctx.get("paper_id") if ctx.get("paper_id") is not None else ctx.get("corpus_id")
    year = ctx.get("year")
    return SuppliedPassage(
        title=str(ctx.get("title") or ""), text=str(ctx["text"]), url=None if ctx.get("url") is None else str(ctx["url"]),
        paper_id=None if paper is None else str(paper),
        year=int(year) if isinstance(year, int) or (isinstance(year, str) and year.isdigit()) else None,
    )


def answer_example(engine: Any, spec: TaskSpec, example: Example, mode: str,
                   max_tokens: int | None = None) -> dict[str, Any]:
    """One prediction record for ``example``."""
    start = time.perf_counter()
    record: dict[str, Any] = {"input": example.input, "id": example.id}
    if mode == "closed_book":
        got = closed_book_answer(engine.llm, example.input, spec.engine_task, max_tokens)
        record.update(output=got["output"], ctxs=[], usage={"prompt_tokens": got["prompt_tokens"],
                                                           "completion_tokens": got["completion_tokens"], "calls": 1})
    else:
        ans = engine.answer(example.input, _options(spec, example, mode, max_tokens))
        output, ctxs = answer_to_prediction(ans)
        record.update(output=output, ctxs=ctxs, verdict=ans.verdict, usage=ans.usage.model_dump())
    if example.answer is not None:
        record["answer"] = example.answer
    record["mode"] = mode
    record["elapsed_s"] = round(time.perf_counter() - start, 3)
    return record


def run_predictions(engine: Any, spec: TaskSpec, examples: Sequence[Example], output: str | Path, *,
                    mode: str = "pipeline", resume: bool = False, limit: int | None = None,
                    max_tokens: int | None = None, progress: bool = True, service: Any = None,
                    in_flight: int = 16) -> RunSummary:
    """Answer ``examples`` (the first ``limit``) into ``output``; see the module doc. With
    ``service`` (a ``ServiceClient``) the questions are answered by that deployment's workers,
    ``in_flight`` at a time, and written as they finish."""
    from tqdm import tqdm

    if mode not in MODES:
        raise RunError(f"unknown mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
    output = Path(output)
    if output.exists() and output.stat().st_size > 0 and not resume:
        raise RunError(f"{output} already holds predictions",
                       hint="pass --resume to continue it, or choose another --output")
    chosen = list(examples)[:limit] if limit else list(examples)
    truncate_partial_line(output)
    done = done_inputs(output) if resume else set()
    todo = [ex for ex in chosen if prediction_key(ex.id, ex.input) not in done]
    summary = RunSummary(task=spec.name, mode=mode, output=str(output), total=len(chosen),
                         passages="none" if mode == "closed_book" else spec.passages,
                         skipped_done=len(chosen) - len(todo))
    settings = getattr(engine, "settings", None)
    if settings is not None:
        summary.settings_fingerprint = settings.fingerprint()
    started = time.perf_counter()
    if service is not None:
        _run_via_service(service, spec, todo, mode, max_tokens, output, summary, progress, in_flight)
        summary.elapsed_s = round(time.perf_counter() - started, 2)
        summary.model = f"service {service.base_url}"
        write_meta(output, summary, settings)
        return summary
    for ex in tqdm(todo, desc=f"{spec.name} {mode}", disable=not progress, unit="q"):
        try:
            record = answer_example(engine, spec, ex, mode, max_tokens)
        except ScholarError as exc:
            if not exc.retryable:
                raise
            summary.failed += 1
            summary.failures.append(f"{ex.id}: {exc.message}")
            log.warning("question %s failed (%s); resume later to retry it", ex.id, exc.message)
            continue
        append_predictions(output, [record])
        summary.written += 1
    summary.elapsed_s = round(time.perf_counter() - started, 2)
    summary.model = str(getattr(engine.llm, "model_id", "")) if todo or mode == "closed_book" else ""
    if mode == "pipeline" and settings is not None and getattr(getattr(settings, "citations", None), "verify", False):
        summary.judge = str(getattr(settings.citations, "judge", ""))
    write_meta(output, summary, settings)
    return summary


def _run_via_service(service: Any, spec: TaskSpec, todo: Sequence[Example], mode: str, max_tokens: int | None,
                     output: Path, summary: RunSummary, progress: bool, in_flight: int) -> None:
    from tqdm import tqdm

    from eval.scholarqabench.service import answer_all

    if mode == "closed_book":
        raise RunError("closed_book runs answer with the bare LLM in this process",
                       hint="run the closed-book baseline without --service")
    bar = tqdm(total=len(todo), desc=f"{spec.name} {mode} (service)", disable=not progress, unit="q")
    starts = {ex.id: time.perf_counter() for ex in todo}

    def on_result(ex: Example, answer: dict[str, Any] | None, error: dict[str, Any] | None) -> None:
        from openscholar.answer import Answer

        bar.update(1)
        if answer is None:
            summary.failed += 1
            summary.failures.append(f"{ex.id}: {(error or {}).get('message', 'failed')}")
            return
        ans = Answer.model_validate(answer)
        out, ctxs = answer_to_prediction(ans)
        record: dict[str, Any] = {"input": ex.input, "id": ex.id, "output": out, "ctxs": ctxs,
                                  "verdict": ans.verdict, "usage": ans.usage.model_dump()}
        if ex.answer is not None:
            record["answer"] = ex.answer
        record.update(mode=mode, elapsed_s=round(time.perf_counter() - starts[ex.id], 3), model=ans.model)
        append_predictions(output, [record])
        summary.written += 1

    items = [(ex, {"question": ex.input, **_options(spec, ex, mode, max_tokens).model_dump(exclude_none=True)})
             for ex in todo]
    try:
        answer_all(service, items, on_result, in_flight=in_flight)
    finally:
        bar.close()


def meta_path(output: str | Path) -> Path:
    return Path(str(output) + ".meta.json")


def write_meta(output: Path, summary: RunSummary, settings: Any) -> None:
    """A sidecar with what produced the predictions (read by the report); runs add up on resume."""
    path = meta_path(output)
    previous: dict[str, Any] = {}
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            previous = {}
    meta = summary.to_dict()
    meta["elapsed_s"] = round(previous.get("elapsed_s", 0.0) + summary.elapsed_s, 2)
    meta["written"] = previous.get("written", 0) + summary.written if summary.skipped_done else summary.written
    meta["model"] = summary.model or previous.get("model", "")
    if settings is not None:
        meta["llm_backend"] = settings.llm.backend
        meta["retrieval"] = (getattr(settings.retrieval, "pipeline", None)
                             if summary.passages == "retrieval" else None)
    meta["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path.write_text(json.dumps(meta, indent=2))
