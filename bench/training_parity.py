"""Training parity: the three trainings (expert, reranker, judge) for a few dozen seeded steps, through
their CLI commands, with every step's loss and the trained artifacts' scores on fixed probes; plus the
packaged artifacts' scores on the same probes. Run it before and after a change to the training code
and compare: the same seed and data must give the same numbers (within float tolerance).

    .venv/bin/python bench/training_parity.py --label before     # writes bench/results/training_parity_before.json
    .venv/bin/python bench/training_parity.py --label after
    .venv/bin/python bench/training_parity.py --compare before after

The per-step losses are read with torch's global optimizer-step hook and a recorder around the loss
functions the trainers call (cross_entropy, BCEWithLogitsLoss), so the measurement is the same for
any version of the training code. Needs the default datastore (``openscholar datastore build --default``).
Never reads test qrels. Single-threaded (``--threads 1``) so that runs are bitwise comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SCIFACT = REPO.parent / "shared" / "data" / "beir" / "scifact"
RESULTS = REPO / "bench" / "results"


class LossRecorder:
    """Per optimizer step: the mean of the loss values computed since the previous step."""

    def __init__(self) -> None:
        import torch

        self.pending: list[float] = []
        self.steps: list[float] = []
        ce = torch.nn.functional.cross_entropy
        bce = torch.nn.BCEWithLogitsLoss.forward

        def rec_ce(*a: Any, **k: Any) -> Any:
            out = ce(*a, **k)
            self.pending.append(float(out.detach()))
            return out

        def rec_bce(mod: Any, *a: Any, **k: Any) -> Any:
            out = bce(mod, *a, **k)
            self.pending.append(float(out.detach()))
            return out

        torch.nn.functional.cross_entropy = rec_ce
        torch.nn.BCEWithLogitsLoss.forward = rec_bce
        from torch.optim.optimizer import register_optimizer_step_post_hook

        register_optimizer_step_post_hook(self._step)

    def _step(self, *_: Any) -> None:
        if self.pending:
            self.steps.append(sum(self.pending) / len(self.pending))
        self.pending = []

    def take(self) -> list[float]:
        out, self.steps, self.pending = self.steps, [], []
        return out


def cli(args: list[str]) -> None:
    from cli.main import app

    app(args, standalone_mode=False)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def probe_data() -> dict[str, Any]:
    """Fixed probes from SciFact TRAIN claims (the held-out dev ids, never trained on) and corpus."""
    queries = {q["_id"]: q["text"] for q in read_jsonl(SCIFACT / "queries.jsonl")}
    train = sorted({ln.split("\t")[0] for ln in (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()[1:] if ln})
    corpus = read_jsonl(SCIFACT / "corpus.jsonl")[:12]
    return {
        "claims": [queries[q] for q in train[:4]],
        "passages": [f"{d['title']}. {d['text']}" for d in corpus],
    }


def expert_pairs(out: Path, n_queries: int) -> Path:
    """SciFact train claims (after the 100 dev ids) -> their gold abstracts: a small expert's data."""
    queries = {q["_id"]: q["text"] for q in read_jsonl(SCIFACT / "queries.jsonl")}
    corpus = {d["_id"]: d for d in read_jsonl(SCIFACT / "corpus.jsonl")}
    gold: dict[str, list[str]] = {}
    for ln in (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        if ln.strip():
            q, d, _ = ln.split("\t")
            gold.setdefault(q, []).append(d)
    rows = []
    for q in sorted(gold)[100 : 100 + n_queries]:
        for d in gold[q]:
            rows.append({"query": queries[q], "positive": f"{corpus[d]['title']} {corpus[d]['text']}"})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out


def reranker_scores(path: Path, probes: dict[str, Any]) -> list[list[float]]:
    from retriever.config import RerankerConfig
    from retriever.reranker import CrossEncoderReranker

    rr = CrossEncoderReranker(RerankerConfig(precision="fp32"), path)
    return [[round(float(x), 5) for x in rr.score(c, probes["passages"])] for c in probes["claims"]]


def expert_vectors(adapter: Path, probes: dict[str, Any]) -> list[list[float]]:
    """Cosines of each probe claim, encoded by the expert, with each probe passage (base vectors)."""
    from router.backbone import Backbone

    bb = Backbone("sentence-transformers/all-MiniLM-L6-v2", threads=1)
    q = bb.encode_with(bb.merged_expert(adapter), probes["claims"])
    p = bb.encode(probes["passages"])
    return [[round(float(x), 5) for x in row] for row in (q @ p.T)]


def judge_scores(path: Path, probes: dict[str, Any]) -> list[float]:
    from openscholar.judges.trained import TrainedJudge

    judge = TrainedJudge(path)
    pairs = [(c, p) for c in probes["claims"][:2] for p in probes["passages"][:6]]
    return [round(float(x), 5) for x in judge.score(pairs)]


def run(label: str, steps: int, only: list[str]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    probes = probe_data()
    rec = LossRecorder()
    out: dict[str, Any] = {"label": label, "steps": steps, "probes": probes, "load": os.getloadavg()}
    work = Path(tempfile.mkdtemp(prefix="training-parity-"))
    if "expert" in only:
        pairs = expert_pairs(work / "pairs.jsonl", n_queries=steps * 8 // 6 + 20)
        os.environ["OPENSCHOLAR_ROUTER__EXPERTS_DIR"] = str(work / "experts")
        os.environ["OPENSCHOLAR_ROUTER__TRAINING__THREADS"] = "1"
        os.environ["OPENSCHOLAR_ROUTER__TRAINING__BATCH_SIZE"] = "8"
        t = time.perf_counter()
        cli(["router", "train-expert", "parity", "--pairs", str(pairs), "--steps", str(steps), "--seed", "13", "--no-pilots"])
        manifest = json.loads((work / "experts" / "parity" / "manifest.json").read_text())
        out["expert"] = {
            "seconds": round(time.perf_counter() - t, 1),
            "losses": rec.take(),
            "final_loss": manifest["training"]["final_loss"],
            "metrics": manifest["metrics"],
            "steps": manifest["training"]["steps"],
            "probe_cosines": expert_vectors(work / "experts" / "parity" / "adapter", probes),
        }
    if "reranker" in only:
        t = time.perf_counter()
        cli(["train", "reranker", "--out", str(work / "reranker"), "--no-extra", "--max-train-queries", str(steps * 8),
             "--threads", "1", "--seed", "13", "--no-progress"])
        manifest = json.loads((work / "reranker" / "manifest.json").read_text())
        out["reranker"] = {
            "seconds": round(time.perf_counter() - t, 1),
            "losses": rec.take(),
            "training": {k: manifest["training"][k] for k in ("steps", "loss_first20", "loss_last20", "scale", "bf16_autocast")},
            "groups": manifest["groups"],
            "probe_scores": reranker_scores(work / "reranker", probes),
        }
    if "judge" in only:
        t = time.perf_counter()
        cli(["train", "judge", "--out", str(work / "judge"), "--limit", str(steps * 16), "--epochs", "1",
             "--threads", "1", "--seed", "0"])
        manifest = json.loads((work / "judge" / "manifest.json").read_text())
        out["judge"] = {
            "seconds": round(time.perf_counter() - t, 1),
            "losses": rec.take(),
            "heldout": manifest["heldout"],
            "pairs": manifest["data"]["counts"],
            "probe_scores": judge_scores(work / "judge", probes),
        }
    if "packaged" in only:
        from openscholar.judges.trained import PACKAGED_JUDGE
        from openscholar.retrieval import PACKAGED_RERANKER
        from router.config import PACKAGED_EXPERTS

        out["packaged"] = {
            "reranker": reranker_scores(PACKAGED_RERANKER, probes),
            "experts": {e.name: expert_vectors(e / "adapter", probes) for e in sorted(PACKAGED_EXPERTS.iterdir())
                        if (e / "adapter").is_dir()},
            "judge": judge_scores(PACKAGED_JUDGE, probes),
        }
    return out


def _flat(x: Any, path: str = "") -> dict[str, float]:
    if isinstance(x, dict):
        return {k2: v for k, v in x.items() for k2, v in _flat(v, f"{path}.{k}" if path else k).items()}
    if isinstance(x, list):
        return {k2: v for i, v in enumerate(x) for k2, v in _flat(v, f"{path}[{i}]").items()}
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return {path: float(x)}
    return {}


def compare(a: str, b: str) -> dict[str, Any]:
    """Largest absolute difference per section (seconds and load excluded)."""
    da = json.loads((RESULTS / f"training_parity_{a}.json").read_text())
    db = json.loads((RESULTS / f"training_parity_{b}.json").read_text())
    report: dict[str, Any] = {}
    for section in ("expert", "reranker", "judge", "packaged"):
        if section not in da or section not in db:
            continue
        fa, fb = _flat(da[section]), _flat(db[section])
        keys = [k for k in fa if k in fb and not k.startswith("seconds")]
        diffs = {k: abs(fa[k] - fb[k]) for k in keys}
        worst = max(diffs, key=lambda k: diffs[k]) if diffs else None
        report[section] = {
            "compared": len(keys),
            "only_in_one": sorted(set(fa) ^ set(fb))[:10],
            "max_abs_diff": diffs[worst] if worst else None,
            "where": worst,
            "losses": [len(da[section].get("losses", [])), len(db[section].get("losses", []))],
        }
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default="run")
    ap.add_argument("--steps", type=int, default=30, help="Optimizer steps of each training.")
    ap.add_argument("--only", nargs="*", default=["expert", "reranker", "judge", "packaged"])
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
    args = ap.parse_args()
    if args.compare:
        print(json.dumps(compare(*args.compare), indent=2))
        return
    result = run(args.label, args.steps, args.only)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"training_parity_{args.label}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    for section in ("expert", "reranker", "judge"):
        if section in result:
            losses = result[section]["losses"]
            print(f"{section}: {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}, {result[section]['seconds']}s")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
