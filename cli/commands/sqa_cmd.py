"""`openscholar eval scholarqabench` (answer a subset) and `openscholar eval score` (score predictions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli.common import err, out, print_json, settings


def _root(s: Any) -> Path | None:
    root = getattr(s.corpus, "scholarqabench_dir", None)
    return Path(root).expanduser() if root else None


def scholarqabench(
    ctx: typer.Context,
    task: str = typer.Option(..., "--task", help="scifact, pubmedqa, qasa, multi, cs, bio or neuro."),
    input_file: Path = typer.Option(None, "--input", help="Task file (default: its dev file in corpus.scholarqabench_dir)."),
    limit: int = typer.Option(None, "--limit", min=1, help="Answer only the first N questions."),
    output: Path = typer.Option(None, "--output", help="Predictions JSONL (default: sqa_<task>_<mode>.jsonl)."),
    resume: bool = typer.Option(False, "--resume", help="Skip questions already in --output and append."),
    mode: str = typer.Option("pipeline", "--mode", help="pipeline | no_feedback | closed_book."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help="Completion budget per LLM call."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
    service: str = typer.Option(None, "--service", help="Answer through a running service (URL of `openscholar "
                                "serve`): its Celery workers answer in parallel."),
    api_key: str = typer.Option(None, "--api-key", help="API key for --service."),
    in_flight: int = typer.Option(16, "--in-flight", min=1, help="Jobs queued at once with --service."),
) -> None:
    """Answer a ScholarQABench subset and write predictions in the benchmark's format."""
    from eval.scholarqabench.loaders import load_task, task_spec
    from eval.scholarqabench.runner import run_predictions
    from openscholar.engine import Engine

    s = settings(ctx)
    spec = task_spec(task)
    mode = mode.replace("-", "_")
    examples = load_task(spec.name, input_file, _root(s))
    output = output or Path(f"sqa_{spec.name}_{mode}.jsonl")
    engine = Engine.from_settings(s)
    client = None
    if service:
        from eval.scholarqabench.service import ServiceClient

        client = ServiceClient(service, api_key)
    try:
        summary = run_predictions(engine, spec, examples, output, mode=mode, resume=resume, limit=limit,
                                  max_tokens=max_tokens, progress=progress, service=client, in_flight=in_flight)
    finally:
        if client is not None:
            client.close()
    if as_json:
        print_json(summary.to_dict())
        return
    out.print(f"{spec.name} ({mode}): {summary.written} answered, {summary.skipped_done} already done, "
              f"{summary.failed} failed, of {summary.total} in {summary.elapsed_s:.0f}s -> {output}", highlight=False)
    for failure in summary.failures[:10]:
        err.print(f"  failed: {failure}", highlight=False)


def score(
    ctx: typer.Context,
    task: str = typer.Option(..., "--task", help="scifact, pubmedqa, qasa, multi, cs, bio or neuro."),
    predictions: list[str] = typer.Option(..., "--predictions", help="Predictions file; repeat to compare runs "
                                          "(LABEL=FILE names a run)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (keys include accuracy, citation_precision, "
                                 "citation_recall, n)."),
    judge: str = typer.Option(None, "--judge", help="Attribution judge: default|trained|llm|lexical or an HF id "
                              "(osunlp/attrscore-flan-t5-xl); default eval.judge."),
    judge_llm_model: str = typer.Option(None, "--judge-llm-model", help="Judge LLM for rubric/Prometheus "
                                        "(default: the llm settings)."),
    judge_llm_backend: str = typer.Option(None, "--judge-llm-backend", help="Its backend (transformers|openai)."),
    judge_llm_url: str = typer.Option(None, "--judge-llm-url", help="Its OpenAI-compatible base URL."),
    no_llm_judge: bool = typer.Option(False, "--no-llm-judge", help="Skip the rubric and Prometheus metrics."),
    data: Path = typer.Option(None, "--data", help="Task file to join gold fields from (default: its dev file)."),
    rubrics: Path = typer.Option(None, "--rubrics", help="Prometheus rubric file (default: "
                                 "rubrics/prometheus_rubrics_v8.json under corpus.scholarqabench_dir)."),
    save: Path = typer.Option(None, "--save", help="Write the report JSON here and the markdown table beside it."),
    threshold: float = typer.Option(0.5, "--threshold", min=0, max=1, help="Judge score that counts as entailed."),
    progress: bool = typer.Option(False, "--progress", help="Show progress bars."),
    limit: int = typer.Option(None, "--limit", min=1, help="Score only the first N predictions of each file."),
) -> None:
    """Score predictions as ScholarQABench defines each metric; reports name their judges."""
    from eval.judges import build_attribution_judge
    from eval.scholarqabench.loaders import BenchmarkDataError, load_task, task_spec
    from eval.scholarqabench.predictions import read_predictions
    from eval.scholarqabench.report import build_report, run_entry, save_report, to_markdown
    from eval.scholarqabench.scoring import score_predictions

    s = settings(ctx)
    spec = task_spec(task)
    runs = []
    for spec_arg in predictions:
        label, _, file = spec_arg.rpartition("=") if "=" in spec_arg else ("", "", spec_arg)
        runs.append((label or Path(file).stem, Path(file)))
    loaded = [(label, path, read_predictions(path)[:limit]) for label, path in runs]  # validate all first
    examples = None
    try:
        examples = load_task(spec.name, data, _root(s))
    except BenchmarkDataError:
        if data is not None:
            raise
    needs_citations = any(m.startswith("citations") for m in spec.metrics)
    attribution = build_attribution_judge(s, judge) if needs_citations else None
    judge_llm = None
    if not no_llm_judge and any(m in ("rubric", "prometheus") for m in spec.metrics):
        from openscholar.llm import build_llm

        overrides = {k: v for k, v in (("model", judge_llm_model), ("backend", judge_llm_backend),
                                       ("base_url", judge_llm_url)) if v}
        judge_llm = build_llm(s.llm.model_copy(update=overrides))
    root = _root(s)
    rubric_path = rubrics or (root / "rubrics" / "prometheus_rubrics_v8.json" if root else None)
    entries = []
    for label, path, items in loaded:
        result = score_predictions(spec, items, judge=attribution, judge_llm=judge_llm, examples=examples,
                                   prometheus_rubrics=rubric_path, threshold=threshold, progress=progress)
        entries.append(run_entry(label, path, result, items))
    report = build_report(spec.name, entries)
    if save is not None:
        save_report(report, save, save.with_suffix(".md"))
    if as_json:
        print_json(entries[0]["scores"] if len(entries) == 1 else report)
        return
    out.print(to_markdown(report), highlight=False)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    groups["eval"].command("scholarqabench")(scholarqabench)
    groups["eval"].command("score")(score)
