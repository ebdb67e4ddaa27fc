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


def sort_by_example_order(path: Path, ids: list[str]) -> None:
    """Rewrite ``path`` with its records in the order of ``ids`` (records without a known id last)."""
    if not path.is_file():
        return
    rank = {i: n for n, i in enumerate(ids)}
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records.sort(key=lambda r: rank.get(str(r.get("id")), len(ids)))
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)
    print(f"{path}: {len(records)} records in example order", flush=True)


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
    ap.add_argument("--sort-only", action="store_true",
                    help="Only rewrite the modes' prediction files in the task's example order (resumed runs "
                    "append late examples at the end; `eval score --limit N` takes the first N lines).")
    args = ap.parse_args()
    settings = load_settings()
    spec = task_spec(args.task)
    examples = load_task(spec.name, args.input, settings.corpus.scholarqabench_dir)
    if args.sort_only:
        for mode in args.modes:
            sort_by_example_order(Path(args.out_dir) / f"{spec.name}_{mode}.jsonl", [e.id for e in examples])
        return
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
