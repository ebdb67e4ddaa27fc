"""Evidence mode's verdict, paired: every question answered with ``evidence.verdict_windows`` None
(each passage in play read whole by the judge, eight windows: the previous verdict) and N (each
passage's N closest windows judged alone), alternately in one process, so the machine's load hits
both alike. Reports per question the answer's seconds and the verdict's own (``decide`` re-run on the
same quotes, timed alone), their p50 and ratios, and whether the two verdicts agree.

Questions: the demo yes/no question and SciFact train claims of the judge's held-apart dev fold (as
claims; timing only, no choice is made here). Run it on the default datastore:

    OPENSCHOLAR_DATASTORE__PATH=<default datastore> nice -n 10 .venv/bin/python bench/verdict_latency.py 2 8

Writes bench/results/verdict_latency.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from faithfulness import DEMO_QUESTION
    from verdict_rule import held_apart_claims

    from openscholar.engine import AnswerOptions, Engine
    from openscholar.settings import load_settings
    from openscholar.verdict import decide, statement_of

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    nq = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    settings = load_settings()
    settings.answer.mode = "evidence"  # type: ignore[attr-defined]
    engine = Engine.from_settings(settings)
    questions = [(DEMO_QUESTION, "long_form")] + [(c["claim"], "claim") for c in held_apart_claims()[: nq - 1]]
    load0 = os.getloadavg()
    t = time.perf_counter()
    engine.answer(DEMO_QUESTION, AnswerOptions(feedback=False))  # loads every model; not timed below
    model_load = time.perf_counter() - t
    answer_s: dict[str, list[float]] = {"whole": [], "windows": []}
    verdict_s: dict[str, list[float]] = {"whole": [], "windows": []}
    rows = []
    for i, (q, task) in enumerate(questions):
        out = {}
        for cfg in (("whole", "windows") if i % 2 == 0 else ("windows", "whole")):
            engine.settings.evidence.verdict_windows = None if cfg == "whole" else n
            t = time.perf_counter()
            out[cfg] = engine.answer(q, AnswerOptions(feedback=False, task=task))  # type: ignore[arg-type]
            answer_s[cfg].append(time.perf_counter() - t)
        a = out["whole"]
        refs = {r.id: r for r in a.passages}
        statement = q if task == "claim" else statement_of(q)
        for cfg in (("whole", "windows") if i % 2 == 0 else ("windows", "whole")):  # the verdict alone, same quotes
            t = time.perf_counter()
            decide(statement, [e.model_copy() for e in a.evidence], refs, engine.judge,
                   windows=None if cfg == "whole" else n)
            verdict_s[cfg].append(time.perf_counter() - t)
        va, vb = out["whole"].assessment, out["windows"].assessment
        rows.append({"question": q[:80], "task": task, "answer_whole_s": round(answer_s["whole"][-1], 2),
                     "answer_windows_s": round(answer_s["windows"][-1], 2),
                     "verdict_whole_s": round(verdict_s["whole"][-1], 2),
                     "verdict_windows_s": round(verdict_s["windows"][-1], 2),
                     "passages_judged": len({e.reference for e in a.evidence}), "quotes": len(a.evidence),
                     "verdict_whole": va.label if va else None, "verdict_windows": vb.label if vb else None,
                     "same_quotes": [e.quote for e in out["whole"].evidence] == [e.quote for e in out["windows"].evidence],
                     "load": os.getloadavg()[0]})
        print(rows[-1], flush=True)

    def p50(x: list[float]) -> float:
        return round(statistics.median(x), 3)

    summary = {"questions": len(questions), "windows": n, "model_load_s": round(model_load, 1),
               "p50_answer_whole_s": p50(answer_s["whole"]), "p50_answer_windows_s": p50(answer_s["windows"]),
               "ratio_answer_p50": round(p50(answer_s["whole"]) / p50(answer_s["windows"]), 2),
               "p50_verdict_whole_s": p50(verdict_s["whole"]), "p50_verdict_windows_s": p50(verdict_s["windows"]),
               "ratio_verdict_p50": round(p50(verdict_s["whole"]) / p50(verdict_s["windows"]), 2),
               "verdicts_agree": sum(r["verdict_whole"] == r["verdict_windows"] for r in rows),
               "load_avg": {"start": load0, "end": os.getloadavg()}, "judge": engine.settings.citations.judge,
               "cpus": os.cpu_count(), "torch_threads": 1, "rows": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    out_path = REPO / "bench" / "results" / "verdict_latency.json"
    out_path.write_text(json.dumps(summary, indent=1) + "\n")
    print("wrote", out_path)


if __name__ == "__main__":
    main()
