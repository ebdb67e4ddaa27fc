"""Answer pipeline benchmark: the pipeline without the LLM (scripted), and end to end with SmolLM2.

Part 1 runs every question through the full synthesis loop (retrieve -> answer -> feedback with one
retrieval question -> edit -> citation verification) with the scripted LLM, so the figure is the
pipeline's own cost: retrieval, prompt building, parsing, the support judge. p50 per question,
target <= 300 ms. Part 2 runs a few questions end to end with the packaged SmolLM2 in process on
this CPU (feedback off and on).

    nice -n 10 .venv/bin/python bench/answer_bench.py                 # ~10-20 min on 2 busy cores
    nice -n 10 .venv/bin/python bench/answer_bench.py --skip-llm      # part 1 only

Uses the default datastore (datastore.path from ./openscholar.toml). Writes bench/results/answer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"


def questions(n_scifact: int, n_sqa: int) -> list[str]:
    """SciFact test claims (biomedical) and ScholarQABench CS questions."""
    test_ids = {ln.split("\t")[0] for ln in (SHARED / "beir/scifact/qrels/test.tsv").read_text().splitlines()[1:]}
    claims = [json.loads(line) for line in (SHARED / "beir/scifact/queries.jsonl").read_text().splitlines()]
    out = [c["text"] for c in claims if c["_id"] in test_ids][:n_scifact]
    cs = json.loads((SHARED / "scholarqabench/scholarqa_cs/test_configs_snippets_dev.json").read_text())
    out += [item["initial_prompt"] for item in cs[:n_sqa]]
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 1)


def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    steps = sorted({k for r in runs for k in r})
    return {
        "questions": len(runs),
        "total_ms": {"p50": pct([r["total"] for r in runs], 0.5), "p90": pct([r["total"] for r in runs], 0.9),
                     "mean": round(statistics.mean(r["total"] for r in runs), 1)},
        "step_ms_p50": {s: pct([r.get(s, 0.0) for r in runs], 0.5) for s in steps if s != "total"},
    }


def feedback_with_retrieval(messages: list[dict[str, str]]) -> str | None:
    """Scripted: one feedback item asking for more retrieval; other prompts get the default reply."""
    from openscholar.prompts import prompt_kind

    if prompt_kind(messages) != "feedback":
        return None
    question = messages[-1]["content"].rsplit("\nQuestion: ", 1)[-1].split("\nAnswer: ")[0]
    return f"Feedback: Add more supporting evidence.\nQuestion: {question} evidence"


def bench_pipeline(settings: Any, qs: list[str], pipeline: str, judge: str) -> dict[str, Any]:
    from openscholar.engine import Engine
    from openscholar.options import AnswerOptions
    from openscholar.llm.scripted import ScriptedLLM

    settings = settings.model_copy(deep=True)
    settings.citations.judge = judge

    engine = Engine.from_settings(settings, llm=ScriptedLLM(fn=feedback_with_retrieval))
    t0 = time.perf_counter()
    engine.answer(qs[0], AnswerOptions(pipeline=pipeline, mode="synthesis"))  # loads models; not timed below
    load_s = time.perf_counter() - t0
    runs, cited, supported, sentences = [], 0, 0, 0
    for q in qs:
        a = engine.answer(q, AnswerOptions(pipeline=pipeline, mode="synthesis"))
        runs.append(a.timings)
        cited += len(a.references)
        supported += sum(s.supported for s in a.sentences)
        sentences += len(a.sentences)
    out = summarize(runs)
    out.update(pipeline=pipeline, judge=settings.citations.judge, warmup_s=round(load_s, 1),
               supported_sentences=f"{supported}/{sentences}", references_cited=cited)
    return out


def bench_smollm2(settings: Any, qs: list[str], max_tokens: int, feedback: bool, pipeline: str) -> dict[str, Any]:
    from openscholar.engine import Engine
    from openscholar.options import AnswerOptions

    settings = settings.model_copy(deep=True)
    settings.llm.backend = "transformers"
    engine = Engine.from_settings(settings)
    t0 = time.perf_counter()
    engine.llm.warm_up()  # type: ignore[attr-defined]
    load_s = time.perf_counter() - t0
    runs, samples = [], []
    for q in qs:
        a = engine.answer(q, AnswerOptions(feedback=feedback, max_tokens=max_tokens, pipeline=pipeline, mode="synthesis"))
        t = dict(a.timings)
        t["llm"] = sum(t.get(k, 0.0) for k in ("generate", "feedback", "edit"))
        runs.append(t)
        samples.append({"question": q, "text": a.text[:600], "references": [r.id for r in a.references],
                        "tokens": a.usage.model_dump(), "edits": [e.kept for e in a.edits],
                        "supported": f"{sum(s.supported for s in a.sentences)}/{len(a.sentences)}",
                        "total_s": round(a.timings["total"] / 1000, 1)})
    out = summarize(runs)
    tok = sum(s["tokens"]["completion_tokens"] for s in samples)
    llm_s = sum(r["llm"] for r in runs) / 1000
    out.update(feedback=feedback, max_tokens=max_tokens, model_load_s=round(load_s, 1),
               completion_tokens_per_s=round(tok / llm_s, 2) if llm_s else None, samples=samples)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-scifact", type=int, default=10)
    ap.add_argument("--n-sqa", type=int, default=10)
    ap.add_argument("--configs", default="dense:lexical,hybrid+rerank:lexical,dense:trained",
                    help="pipeline:judge pairs for part 1")
    ap.add_argument("--llm-questions", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--skip-llm", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "answer.json")
    args = ap.parse_args()
    os.chdir(REPO)
    from openscholar.settings import load_settings

    settings = load_settings()
    qs = questions(args.n_scifact, args.n_sqa)
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg(), "python": platform.python_version()},
        "datastore": str(settings.datastore_path),
        "questions": len(qs),
        "pipeline_without_llm": [],
    }
    for config in args.configs.split(","):
        pipeline, judge = config.split(":")
        try:
            r = bench_pipeline(settings, qs, pipeline, judge)
        except Exception as exc:  # noqa: BLE001 - a missing model for one pipeline is reported, not fatal
            r = {"pipeline": pipeline, "judge": judge, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(r), flush=True)
        result["pipeline_without_llm"].append(r)
    if not args.skip_llm:
        llm_qs = qs[: args.llm_questions]
        result["smollm2_no_feedback"] = bench_smollm2(settings, llm_qs, args.max_tokens, False, "dense")
        print(json.dumps(result["smollm2_no_feedback"])[:800], flush=True)
        result["smollm2_feedback"] = bench_smollm2(settings, llm_qs[:1], args.max_tokens, True, "dense")
        print(json.dumps(result["smollm2_feedback"])[:800], flush=True)
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
