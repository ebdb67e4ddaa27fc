"""Choose the router's pilot weighting on held-out TRAIN queries, never on a test set.

Every expert's pilot set is held out of its training (router.pilot_holdout), so Algorithm 1's
per-query nDCG@10 of each expert on those queries is an honest dev signal. Leave-one-out: each pilot
query is routed by the pilots built from all the OTHER pilot queries, under each weighting rule, and
scores the nDCG@10 of the expert it was routed to. Reported per domain and as the macro mean over
domains (each domain counts once, whatever its size), next to the domain's own expert and the
per-query oracle. The routing head (router.routing = "head") is scored out-of-fold: 5-fold
cross-validation over the same pilot queries, each fold's head fitted on the other four.

    nice -n 10 .venv/bin/python bench/router_dev.py [--out bench/results/router_dev.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from router.encoder import pilot_similarities
from router.head import cross_validated, layer_features
from router.pilots import ExpertEncoders, Pilots, domain_scores, group_entries
from router.pool import PairSet

RULES = ["uniform", "count", "nearest", "knn1", "knn4", "knn8", "knn16", "knn32"]


def route(rule: str, q: np.ndarray, pilots: Pilots, names: list[str]) -> int:
    """The expert index ``rule`` picks for one query (the router's own scoring, router.encoder)."""
    weighting, knn = ("knn", int(rule[3:])) if rule.startswith("knn") else (rule, 1)
    vecs, owner, count = pilots.matrix(names)
    members, member_owner = pilots.member_matrix(names)
    return int(pilot_similarities(q[None], vecs, owner, count, members, member_owner, len(names), weighting, knn)[0].argmax())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "router_dev.json")
    args = ap.parse_args()

    from openscholar.components import open_datastore
    from openscholar.settings import load_settings
    from router.backbone import Backbone
    from router.config import resolve_experts_dir
    from router.experts import ExpertStore
    from router.training import CorpusNegatives

    s = load_settings()
    store = ExpertStore(resolve_experts_dir(s.router, s.cache_path))
    experts = sorted(store.experts(), key=lambda e: e.name)
    names = [e.name for e in experts]
    held = {e.name: e.manifest.training.pilot_held_out for e in experts}
    negatives = CorpusNegatives.from_datastore(open_datastore(s))
    backbone = Backbone(s.embedder.model).load()
    encoders = ExpertEncoders(backbone)
    data = {e.name: domain_scores(backbone, e, experts, negatives.vectors, negatives.lookup, s.router.pilot_k, encoders)
            for e in experts}
    texts = {e.name: PairSet.from_pairs(e.pilot_set()).queries for e in experts}
    feats = np.concatenate([layer_features(backbone, texts[d], s.router.head_layer) for d in names])
    labels = np.concatenate([np.full(len(texts[d]), j) for j, d in enumerate(names)])
    oof = cross_validated(feats, labels, len(names), l2=1e-4, iters=800)
    results: dict[str, dict[str, float]] = {r: {} for r in [*RULES, "head", "own expert", "oracle"]}
    offset = 0
    for d, (base, scores) in data.items():
        got = {r: [] for r in RULES}
        for qi in range(len(base)):
            entries = []
            for d2, (b2, s2) in data.items():
                keep = np.arange(len(b2)) != qi if d2 == d else np.ones(len(b2), bool)
                entries += group_entries(d2, names, b2[keep], s2[keep])
            pilots = Pilots(backbone.model_name, s.router.pilot_k, "", entries)
            q = base[qi] / max(float(np.linalg.norm(base[qi])), 1e-12)
            for r in RULES:
                got[r].append(scores[qi, route(r, q, pilots, names)])
        for r in RULES:
            results[r][d] = float(np.mean(got[r]))
        picks = oof[offset : offset + len(base)]
        offset += len(base)
        results["head"][d] = float(scores[np.arange(len(base)), picks].mean())
        results["own expert"][d] = float(scores[:, names.index(d)].mean())
        results["oracle"][d] = float(scores.max(axis=1).mean())
    table = {r: {**v, "macro": float(np.mean(list(v.values())))} for r, v in results.items()}
    print(f"{'rule':<12}" + "".join(f"{n:>13}" for n in [*names, "macro"]))
    for r, v in table.items():
        print(f"{r:<12}" + "".join(f"{v[n] * 100:13.2f}" for n in [*names, "macro"]))
    best = max([*RULES, "head"], key=lambda r: table[r]["macro"])
    print(f"best rule on held-out pilot queries (leave-one-out / out-of-fold, macro nDCG@10): {best}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"table": table, "best": best, "pilot_held_out": held,
                                    "queries": {d: len(b) for d, (b, _) in data.items()}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
