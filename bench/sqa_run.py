"""Answer one ScholarQABench subset in several modes with one loaded engine (the model loads once).

    nice -n 10 .venv/bin/python bench/sqa_run.py --task scifact --limit 20 --max-tokens 48 \
        --modes closed_book no_feedback pipeline --out-dir bench/results/sqa_preds

Resumable: rerun the same command to continue. Then score and report with
``openscholar eval score --task T --predictions LABEL=FILE ... --save bench/results/sqa_T.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eval.scholarqabench.loaders import load_task, task_spec
from eval.scholarqabench.runner import MODES, run_predictions
from openscholar.engine import Engine
from openscholar.settings import load_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", required=True)
    ap.add_argument("--input", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--out-dir", default="bench/results/sqa_preds")
    ap.add_argument("--interleave", action="store_true",
                    help="Question by question, every mode (so a stopped run still compares modes on the same questions).")
    args = ap.parse_args()
    settings = load_settings()
    spec = task_spec(args.task)
    examples = load_task(spec.name, args.input, settings.corpus.scholarqabench_dir)
    engine = Engine.from_settings(settings)
    limits = range(1, (args.limit or len(examples)) + 1) if args.interleave else [args.limit]
    for limit in limits:
        for mode in args.modes:
            out = Path(args.out_dir) / f"{spec.name}_{mode}.jsonl"
            summary = run_predictions(engine, spec, examples, out, mode=mode, resume=True, limit=limit,
                                      max_tokens=args.max_tokens, progress=not args.interleave)
            print(json.dumps(summary.to_dict()), flush=True)


if __name__ == "__main__":
    main()
