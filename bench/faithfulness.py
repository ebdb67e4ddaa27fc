"""Faithfulness benchmark: the support judges, evidence mode, and the verifier's verdicts.

1. Judges (every one in ``--judges``, in the same run, on the same held-apart pairs):
   - expert attribution: ScholarQA-Multi dev questions held apart by question; each expert sentence
     with the contexts it cites (positive) and the contexts of the question it does not cite;
     ROC-AUC of the support score and accuracy at ``citations.threshold``;
   - SciFact: held-apart train-split claim clusters (never the ScholarQABench 208): the same pair
     figures, 3-way accuracy, and the abstract-level verdict (claim vs the whole abstract);
   - negation probe: every held-apart supported pair with its statement negated
     (`openscholar.judges.perturb.negate`); the share whose support falls below the threshold.
2. Evidence mode over the default datastore: quote fidelity, p50 seconds per question excluding
   model load, share of answers with >= 3 quotes from >= 2 papers.
3. ScholarQABench SciFact (208) and PubMedQA dev (200), gold passage: accuracy of the verifier's
   verdict (the packaged judge reading the claim, or the yes/no question as a statement, against
   the gold abstract as the product reads a verdict, its ``evidence.verdict_windows`` windows
   closest by words each judged alone: `openscholar.verdict.decide_on_passages`, without the quote
   step, which on one abstract re-reads the same sentences) next to the LLM's (one generation
   with the gold passage, from bench/results/sqa_preds) and the majority baselines. "lean": the
   larger of supports / contradicts decides; "strict": "not enough evidence" (neither passes the
   judge's threshold) counts as wrong.

    nice -n 10 .venv/bin/python bench/faithfulness.py                       # all parts
    nice -n 10 .venv/bin/python bench/faithfulness.py --parts judges --judges lexical,trained

Writes bench/results/faithfulness.json (parts not run keep their previous figures).
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
SCIFACT = SHARED / "beir" / "scifact"
SQA = SHARED / "scholarqabench"
OUT = REPO / "bench" / "results" / "faithfulness.json"
DEMO_QUESTION = "Does vitamin D supplementation improve bone mineral density?"


def roc_auc(pos: list[float], neg: list[float]) -> float | None:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney U / (n_pos n_neg))."""
    if not pos or not neg:
        return None
    ranked = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(label for _, label in ranked[i:j]) * (i + j + 1) / 2
        i = j
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# -- 1. judges ----------------------------------------------------------------------------------
def build_judges(names: list[str], judge_path: str | None) -> dict[str, Any]:
    from openscholar.judges.lexical import LexicalJudge
    from openscholar.judges.trained import PACKAGED_JUDGE, TrainedJudge

    judges: dict[str, Any] = {}
    for name in names:
        if name == "lexical":
            judges[name] = LexicalJudge()
        elif name == "trained":
            judges[name] = TrainedJudge(judge_path or PACKAGED_JUDGE, windows_per_passage=None).warm_up()
        elif name == "stacked":  # read as in the product (8 windows per passage), as it was fit
            from openscholar.judges.stacked import StackedJudge

            judges[name] = StackedJudge(windows_per_passage=8).warm_up()
        elif name.startswith("nli:"):
            from openscholar.judges.nli import NLIJudge

            judges[name] = NLIJudge(name[4:], windows_per_passage=None).warm_up()
        else:
            raise SystemExit(f"unknown judge {name!r}: use lexical, trained, stacked or nli:<model id or dir>")
    return judges


def judge_part(judges: dict[str, Any], configured: float | None) -> dict[str, Any]:
    from openscholar.judges.perturb import negate
    from openscholar.judges.support_data import build_judge_pairs

    data = build_judge_pairs(SCIFACT, SQA)
    dev = data["dev"]
    multi = [p for p in dev if p.source in ("multi-cited", "multi-uncited")]
    sci = [p for p in dev if p.source.startswith("scifact-")]
    synth = [p for p in dev if p.source.startswith("synth-")]
    supported = [p for p in dev if p.label == "supports"]
    negated = [(negate(p.statement), p) for p in supported]
    negated = [(s, p) for s, p in negated if s]
    out: dict[str, Any] = {"data": {"multi_pairs": len(multi), "multi_questions": len({p.group for p in multi}),
                                    "scifact_pairs": len(sci), "scifact_groups": len({p.group for p in sci}),
                                    "synthetic_pairs": len(synth), "negation_probe": len(negated),
                                    "split": data["report"]}, "judges": {}}
    from openscholar.judges.protocol import support_threshold

    for name, judge in judges.items():
        t0 = time.perf_counter()
        threshold = support_threshold(configured, judge)
        row: dict[str, Any] = {"threshold": threshold}
        for label, pairs in (("multi", multi), ("scifact", sci), ("synthetic", synth)):
            js = judge.judge([(p.statement, p.evidence) for p in pairs])
            pos = [j.supports for j, p in zip(js, pairs, strict=True) if p.label == "supports"]
            neg = [j.supports for j, p in zip(js, pairs, strict=True) if p.label != "supports"]
            acc = sum((j.supports >= threshold and j.supports > j.contradicts) == (p.label == "supports")
                      for j, p in zip(js, pairs, strict=True)) / len(pairs)
            acc3 = sum(j.relation(threshold) == p.label for j, p in zip(js, pairs, strict=True)) / len(pairs)
            row[label] = {"auc": _r(roc_auc(pos, neg)), "accuracy": _r(acc), "accuracy_3way": _r(acc3),
                          "pairs": len(pairs)}  # synthetic pairs are all non-supports: AUC undefined
        # The probe counts only supported pairs the judge accepts: rejecting a negation of a pair it
        # already rejects says nothing (a judge rejecting everything would score 100%).
        original = judge.judge([(p.statement, p.evidence) for _, p in negated])
        js = judge.judge([(s, p.evidence) for s, p in negated])
        accepted = [k for k, j in enumerate(original) if j.supports >= threshold and j.supports > j.contradicts]
        passes = [j.supports >= threshold and j.supports > j.contradicts for j in js]
        row["negation_probe_accepted"] = len(accepted)
        row["negation_rejected"] = _r(sum(not passes[k] for k in accepted) / len(accepted)) if accepted else None
        row["negation_rejected_all"] = _r(sum(not x for x in passes) / len(passes))
        row["negation_marked_contradicted"] = _r(sum(j.relation(threshold) == "contradicts" for j in js) / len(js))
        row["abstract_verdicts"] = abstract_verdicts(judge, data["report"]["scifact"]["used_claim_ids"], threshold)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out["judges"][name] = row
        print(f"judge {name}: {json.dumps(row)}", flush=True)
    return out


def dev_fold_claims(used_ids: list[str]) -> tuple[dict[str, dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """The SciFact corpus by id, and the claims of ``used_ids`` in the judges' held-apart dev fold
    (split by claim cluster, as `openscholar.judges.support_data` splits) with their cluster."""
    from openscholar.judges.support_data import _clusters, read_jsonl, split_of

    corpus = {d["_id"]: d for d in read_jsonl(SCIFACT / "corpus.jsonl")}
    claims = {q["_id"]: q for q in read_jsonl(SCIFACT / "queries.jsonl")}
    cited: dict[str, set[str]] = {}
    for line in (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        qid, did, _ = line.split("\t")
        cited.setdefault(qid, set()).add(did)
    used = [claims[i] for i in used_ids]
    cluster = _clusters(used, cited)
    return corpus, [(q, cluster[q["_id"]]) for q in used if split_of(f"scifact:{cluster[q['_id']]}", 0.2) == "dev"]


def abstract_verdicts(judge: Any, used_ids: list[str], threshold: float) -> dict[str, Any]:
    """Held-apart SciFact claims against each labelled abstract (windowed): support vs contradict."""
    corpus, dev = dev_fold_claims(used_ids)
    items = []
    for q, _ in dev:
        for did, ev in (q.get("metadata") or {}).items():
            gold = "supports" if ev[0]["label"] == "SUPPORT" else "contradicts"
            items.append((q["text"], f"{corpus[did]['title']}\n{corpus[did]['text']}", gold))
    js = judge.judge([(c, a) for c, a, _ in items])
    lean = sum(("supports" if j.supports >= j.contradicts else "contradicts") == g for j, (_, _, g) in zip(js, items, strict=True))
    strict = sum(j.relation(threshold) == g for j, (_, _, g) in zip(js, items, strict=True))
    majority = max(sum(g == "supports" for *_, g in items), sum(g == "contradicts" for *_, g in items))
    return {"pairs": len(items), "accuracy_lean": _r(lean / len(items)), "accuracy_strict": _r(strict / len(items)),
            "majority": _r(majority / len(items))}


# -- 2. evidence mode ---------------------------------------------------------------------------
def evidence_questions(n: int) -> list[str]:
    """The demo question, held-apart SciFact train claims as yes/no-style claims, and ScholarQA-CS
    dev questions (retrieval questions a user would ask)."""
    cs = json.loads((SQA / "scholarqa_cs" / "test_configs_snippets_dev.json").read_text())
    bio = [json.loads(line)["input"] for line in (SQA / "scholarqa_bio" / "scholarqabench_bio_dev.jsonl").read_text().splitlines()
           if line.strip()]
    qs = [DEMO_QUESTION] + bio[: n // 2] + [c["initial_prompt"] for c in cs[: n - 1 - n // 2]]
    return qs[:n]


def evidence_part(n: int) -> dict[str, Any]:
    from openscholar.engine import AnswerOptions, Engine
    from openscholar.evidence import papers_of, quote_fidelity
    from openscholar.quote_features import finding_features
    from openscholar.settings import load_settings

    settings = load_settings()
    settings.answer.mode = "evidence"  # type: ignore[attr-defined]
    engine = Engine.from_settings(settings)
    qs = evidence_questions(n)
    t0 = time.perf_counter()
    engine.answer(qs[0], AnswerOptions(feedback=False))  # loads every model; not timed below
    load_s = time.perf_counter() - t0
    times, fidelity, rich, samples = [], [], 0, []
    cued, setup, quotes = 0, 0, 0
    for q in qs:
        t = time.perf_counter()
        a = engine.answer(q, AnswerOptions(feedback=False))
        times.append(time.perf_counter() - t)
        refs = {r.id: r for r in a.passages}
        fidelity.append(quote_fidelity(a.evidence, refs))
        papers = papers_of(a.evidence, refs)
        rich += len(a.evidence) >= 3 and papers >= 2
        # what the quotes are, by cues the quote scorer does not weigh (openscholar.quote_features)
        for e in a.evidence:
            f = finding_features(e.quote)
            quotes += 1
            cued += f["result_cues"] > 0
            setup += bool(f["aim"] or f["setup_heading"])
        samples.append({"question": q, "quotes": len(a.evidence), "papers": papers, "seconds": round(times[-1], 2),
                        "verdict": a.assessment.label if a.assessment else None, "steps_ms": a.timings})
    return {"questions": len(qs), "model_load_s": round(load_s, 1),
            "quote_fidelity": round(statistics.mean(fidelity), 4),
            "p50_s": round(statistics.median(times), 3), "p90_s": round(sorted(times)[int(0.9 * (len(times) - 1))], 3),
            "share_3_quotes_2_papers": round(rich / len(qs), 4), "quotes": quotes,
            "share_quotes_with_result_cue": round(cued / max(quotes, 1), 4),
            "share_quotes_aim_or_setup_heading": round(setup / max(quotes, 1), 4), "samples": samples}


# -- 3. ScholarQABench verdicts -----------------------------------------------------------------
def sqa_part(limit: int | None, judge_path: str | None, judge_name: str = "stacked") -> dict[str, Any]:
    from tqdm import tqdm

    from eval.scholarqabench.loaders import load_task
    from openscholar.answer import Reference
    from openscholar.judges.protocol import support_threshold
    from openscholar.judges.trained import PACKAGED_JUDGE, TrainedJudge
    from openscholar.settings import load_settings
    from openscholar.verdict import decide_on_passages, statement_of

    settings = load_settings()
    if judge_name == "stacked":
        from openscholar.judges.stacked import StackedJudge

        judge: Any = StackedJudge(windows_per_passage=8).warm_up()
    else:
        judge = TrainedJudge(judge_path or PACKAGED_JUDGE, windows_per_passage=None).warm_up()
    windows = settings.evidence.verdict_windows  # type: ignore[attr-defined]  # as the product reads a verdict
    out: dict[str, Any] = {"judge": judge_name, "verdict_windows": windows}
    for task, engine_task, yes in (("scifact", "claim", "true"), ("pubmedqa", "yes_no", "yes")):
        examples = load_task(task, root=SQA)[:limit] if limit else load_task(task, root=SQA)
        lean = strict = nee = 0
        t0 = time.perf_counter()
        threshold = support_threshold(settings.citations.threshold, judge)
        no = "false" if yes == "true" else "no"
        for ex in tqdm(examples, desc=task, unit="q"):
            refs = [Reference(id=i, title=c.get("title", ""), text=c["text"]) for i, c in enumerate(ex.gold_ctxs)]
            statement = ex.input if engine_task == "claim" else statement_of(ex.input)
            v = decide_on_passages(statement, refs, judge, threshold=threshold, windows=windows)
            lean += (yes if v.supports >= v.contradicts else no) == ex.answer
            strict += {"supported": yes, "contradicted": no}.get(v.label) == ex.answer
            nee += v.label == "not enough evidence"
        n = len(examples)
        majority = max(sum(ex.answer == yes for ex in examples), n - sum(ex.answer == yes for ex in examples)) / n
        llm = _llm_accuracy(task, {ex.input for ex in examples})
        out[task] = {"n": n, "verifier_lean": _r(100 * lean / n), "verifier_strict": _r(100 * strict / n),
                     "not_enough_evidence": nee, "majority": _r(100 * majority), "llm_gold_passage": llm,
                     "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{task}: {json.dumps(out[task])}", flush=True)
    return out


def _llm_accuracy(task: str, inputs: set[str]) -> float | None:
    """SmolLM2's accuracy with the gold passage (one generation), from the committed prediction file."""
    from eval.scholarqabench.accuracy import is_match

    path = REPO / "bench" / "results" / "sqa_preds" / f"{task}_no_feedback.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["input"] in inputs]
    return _r(100 * sum(is_match(str(r["answer"]), r["output"]) for r in rows) / len(rows)) if rows else None


# -- report -------------------------------------------------------------------------------------
def print_tables(result: dict[str, Any]) -> None:
    j = result.get("judges")
    if j:
        print("\n| judge | Multi AUC | Multi acc | SciFact AUC | SciFact acc (3-way) | synthetic rejected (3-way acc) | negation rejected (of accepted / all) | abstract verdict (lean / strict / majority) |")
        print("|---|---|---|---|---|---|---|---|")
        for name, r in j["judges"].items():
            a = r["abstract_verdicts"]
            print(f"| {name} | {r['multi']['auc']} | {r['multi']['accuracy']} | {r['scifact']['auc']} | "
                  f"{r['scifact']['accuracy']} ({r['scifact']['accuracy_3way']}) | {r['synthetic']['accuracy']} "
                  f"({r['synthetic']['accuracy_3way']}) | {r['negation_rejected']} / {r['negation_rejected_all']} | {a['accuracy_lean']} / {a['accuracy_strict']} / {a['majority']} |")
    e = result.get("evidence")
    if e:
        print(f"\nevidence mode: {e['questions']} questions, quote fidelity {e['quote_fidelity']:.2%}, p50 {e['p50_s']} s "
              f"(p90 {e['p90_s']} s, model load {e['model_load_s']} s), >=3 quotes from >=2 papers "
              f"{e['share_3_quotes_2_papers']:.0%}")
        if "quotes" in e:
            print(f"  {e['quotes']} quotes: {e['share_quotes_with_result_cue']:.0%} with a result cue, "
                  f"{e['share_quotes_aim_or_setup_heading']:.0%} stating an aim or under a setup heading")
    s = result.get("sqa")
    if s:
        print("\n| task | n | verifier (lean) | verifier (strict) | not enough evidence | LLM, gold passage | majority |")
        print("|---|---|---|---|---|---|---|")
        for task, r in s.items():
            if not isinstance(r, dict):
                continue
            print(f"| {task} | {r['n']} | {r['verifier_lean']} | {r['verifier_strict']} | {r['not_enough_evidence']} | "
                  f"{r['llm_gold_passage']} | {r['majority']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="judges,evidence,sqa")
    ap.add_argument("--judges", default="lexical,trained,stacked", help="lexical, trained, stacked, nli:<model id or dir>")
    ap.add_argument("--keep-judges", default="", help="judges whose rows of the previous run are kept when not re-run "
                    "(e.g. trained: 40 minutes on a loaded 2-core machine, unchanged artifact)")
    ap.add_argument("--verdict-judge", default="stacked", choices=["stacked", "trained"],
                    help="the judge of the ScholarQABench verdicts (sqa part)")
    ap.add_argument("--judge-path", default=None, help="a trained judge directory (default: the packaged one)")
    ap.add_argument("--threshold", type=float, default=None, help="support threshold (default: each judge's own)")
    ap.add_argument("--questions", type=int, default=20, help="evidence-mode questions")
    ap.add_argument("--limit", type=int, default=None, help="ScholarQABench examples per task (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    os.chdir(REPO)
    import torch

    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result["machine"] = {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
                         "python": platform.python_version(), "torch_threads": args.threads}
    if "judges" in parts:
        previous = (result.get("judges") or {}).get("judges", {})
        result["judges"] = judge_part(build_judges(args.judges.split(","), args.judge_path), args.threshold)
        if args.keep_judges:  # rows of judges not re-run this time, from the previous run (same pairs)
            for name in args.keep_judges.split(","):
                if name in previous and name not in result["judges"]["judges"]:
                    result["judges"]["judges"][name] = previous[name] | {"from_previous_run": True}
    if "evidence" in parts:
        result["evidence"] = evidence_part(args.questions)
    if "sqa" in parts:
        result["sqa"] = sqa_part(args.limit, args.judge_path, args.verdict_judge)
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    print_tables(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
