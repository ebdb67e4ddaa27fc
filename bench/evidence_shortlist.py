"""Evidence mode, paired: every question answered with evidence.max_scored None (every sentence read by
the quote cross-encoder) and N, alternately in one process (load hits both alike); p50 of each, the
ratio, and the share of the selected quotes that agree. See docs/dev-notes/judge2.md.

    OPENSCHOLAR_DATASTORE__PATH=... nice -n 15 .venv/bin/python bench/evidence_shortlist.py 24 12   # N, questions

Writes bench/results/evidence_shortlist_<N>.json.
"""
import json, os, statistics, sys, time
from pathlib import Path

import torch
torch.set_num_threads(1)
sys.path.insert(0, '.')
from bench.faithfulness import evidence_questions
from openscholar.engine import AnswerOptions, Engine
from openscholar.settings import load_settings
N = int(sys.argv[1]); nq = int(sys.argv[2]) if len(sys.argv) > 2 else 12
s = load_settings(); s.answer.mode = "evidence"
e = Engine.from_settings(s)
qs = evidence_questions(nq)
t = time.perf_counter(); e.answer(qs[0], AnswerOptions(feedback=False)); load = time.perf_counter() - t
res = {"all": [], N: []}; agree = []; rows = []
for i, q in enumerate(qs):
    out = {}
    for cfg in (["all", N] if i % 2 == 0 else [N, "all"]):
        e.settings.evidence.max_scored = None if cfg == "all" else N
        t = time.perf_counter(); a = e.answer(q, AnswerOptions(feedback=False)); dt = time.perf_counter() - t
        res[cfg].append(dt); out[cfg] = a
    qa = {(x.reference, x.start) for x in out["all"].evidence}; qb = {(x.reference, x.start) for x in out[N].evidence}
    agree.append(len(qa & qb) / max(1, len(qa)))
    rows.append({"question": q[:70], "all_s": round(res["all"][-1], 2), f"top{N}_s": round(res[N][-1], 2), "same_quotes": round(agree[-1], 3),
                 "verdict_all": out["all"].assessment.label if out["all"].assessment else None,
                 "verdict_top": out[N].assessment.label if out[N].assessment else None, "passages": len(out["all"].passages)})
    print(rows[-1], flush=True)
summary = {"questions": len(qs), "model_load_s": round(load, 1), "p50_all_s": round(statistics.median(res["all"]), 3),
           f"p50_top{N}_s": round(statistics.median(res[N]), 3),
           "ratio_p50": round(statistics.median(res["all"]) / statistics.median(res[N]), 2),
           "mean_same_quotes": round(statistics.mean(agree), 3), "load_avg": os.getloadavg(), "judge": e.settings.citations.judge,
           "rows": rows}
print(json.dumps(summary, indent=1))
out = Path('bench/results') / f'evidence_shortlist_{N}.json'; out.write_text(json.dumps(summary, indent=1) + '\n'); print('wrote', out)
