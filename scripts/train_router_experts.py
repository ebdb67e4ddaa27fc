"""Train router experts from pairs files (built by scripts/make_expert_pairs.py), one after another.

    nice -n 10 .venv/bin/python scripts/train_router_experts.py --out router/experts bio-claims bio-qa
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datastore.datastore import Datastore  # noqa: E402
from retriever.config import DEFAULT_EMBEDDER  # noqa: E402
from router.backbone import Backbone  # noqa: E402
from router.config import ExpertTrainingConfig, RouterConfig  # noqa: E402
from router.experts import ExpertStore, manifest_summary  # noqa: E402
from router.training import CorpusNegatives, train_from_file  # noqa: E402

DOMAINS = {
    "bio-claims": "biomedical claims: SciFact train claims -> gold abstracts",
    "bio-qa": "biomedical QA: PubMedQA dev questions -> gold contexts",
    "cs-multi": "CS and multi-domain: ScholarQA-CS questions/rubric criteria -> evidence, ScholarQA-Multi questions -> contexts",
    "general-sci": "general scientific: paper title -> abstract over the SciFact corpus",
    "multitask": "multi-task baseline: union of the four domains, each downsampled to <= 400 queries",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="+")
    ap.add_argument("--pairs-dir", type=Path, default=REPO / ".cache" / "openscholar" / "router_pairs")
    ap.add_argument("--datastore", type=Path, default=REPO / ".cache" / "openscholar" / "datastore")
    ap.add_argument("--out", type=Path, default=REPO / "router" / "experts")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=None, help="Override router.training.max_steps.")
    ap.add_argument("--max-seconds", type=float, default=None, help="Override router.training.max_seconds.")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    negatives = CorpusNegatives.from_datastore(Datastore.open(args.datastore))
    backbone = Backbone(DEFAULT_EMBEDDER, threads=args.threads).load()
    overrides = {k: v for k, v in {"max_steps": args.max_steps, "max_seconds": args.max_seconds}.items() if v is not None}
    rc = RouterConfig(training=ExpertTrainingConfig(threads=args.threads, **overrides))
    store = ExpertStore(args.out)
    for name in args.names:
        e = train_from_file(
            backbone, store, name, DOMAINS.get(name, name), args.pairs_dir / f"{name}.jsonl",
            router_config=rc, negatives=negatives, progress=False,
        )
        print(json.dumps(manifest_summary(e.manifest)), flush=True)


if __name__ == "__main__":
    main()
