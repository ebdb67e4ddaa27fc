"""Build each router expert's training pairs (query -> positive passage) from ../shared/data.

Never reads test qrels. Positives are written as the datastore passage the base embedded
(``Passage.embed_text``) when the gold paper is in the datastore, so training and pilot scoring
rank the very vectors search uses; otherwise the raw gold text is kept (embedded by the base).

    .venv/bin/python scripts/make_expert_pairs.py --out .cache/openscholar/router_pairs

Experts (see docs/router_report.md):
  bio-claims   SciFact train claims (qrels/train.tsv) -> passages of their gold abstracts, except the
               held-out dev claims (the first --dev-claims sorted train ids, the reranker's dev split too),
               so one dev split of SciFact train stays unseen by every model trained here
  bio-qa       PubMedQA dev questions (single_paper_tasks/pubmed_dev.jsonl) -> gold_ctx passages
  cs-multi     ScholarQA-CS dev questions and rubric criteria -> rubric evidence snippets,
               ScholarQA-Multi dev questions -> their ctxs passages
  general-sci  title -> abstract passage over the SciFact corpus (the paper's generated-queries idea,
               with the title standing in for a generated query)
  multitask    the union, each domain downsampled to at most --multitask-cap queries
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datastore.datastore import Datastore  # noqa: E402
from datastore.sources import context_paper_id, context_text  # noqa: E402
from retriever.train_reranker import held_out_queries  # noqa: E402
from router.experts import Pair, write_pairs  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


class PassageTexts:
    """paper id -> the embed_texts of its datastore passages (all chunks)."""

    def __init__(self, ds: Datastore) -> None:
        self.by_paper: dict[str, list[str]] = {}
        for p in ds.iter_passages():
            self.by_paper.setdefault(p.paper_id, []).append(p.embed_text)

    def of(self, paper_id: str, fallback: str) -> list[str]:
        return self.by_paper.get(paper_id) or [fallback]


def bio_claims(texts: PassageTexts, dev_claims: int = 100) -> list[Pair]:
    sf = SHARED / "beir" / "scifact"
    queries = {q["_id"]: q["text"] for q in read_jsonl(sf / "queries.jsonl")}
    corpus = {d["_id"]: d for d in read_jsonl(sf / "corpus.jsonl")}
    rows = [line.split("\t") for line in (sf / "qrels" / "train.tsv").read_text().splitlines()[1:]]  # TRAIN qrels only
    dev = set(held_out_queries(sorted({r[0] for r in rows}), dev_claims))
    pairs = []
    for qid, did, score in rows:
        if int(score) > 0 and qid in queries and did in corpus and qid not in dev:
            d = corpus[did]
            pairs += [Pair(queries[qid], t) for t in texts.of(did, f"{d['title']} {d['text']}".strip())]
    return pairs


def _ctx_texts(texts: PassageTexts, ctx: dict) -> list[str]:
    title = str(ctx.get("title") or "").strip()
    text = context_text(ctx.get("text")).strip()
    if not text:
        return []
    pid = ctx.get("id") or ctx.get("paper_id") or ctx.get("corpusid")
    return texts.of(str(pid) if pid else context_paper_id(title, text), f"{title} {text}".strip())


def bio_qa(texts: PassageTexts) -> list[Pair]:
    pairs = []
    for r in read_jsonl(SHARED / "scholarqabench" / "single_paper_tasks" / "pubmed_dev.jsonl"):
        for ctx in r.get("gold_ctx") or []:
            pairs += [Pair(r["input"].strip(), t) for t in _ctx_texts(texts, ctx)]
    return pairs


def cs_multi(texts: PassageTexts) -> list[Pair]:
    pairs = []
    cs = json.loads((SHARED / "scholarqabench" / "scholarqa_cs" / "test_configs_snippets_dev.json").read_text())
    for r in cs:
        question = r["initial_prompt"].strip()
        for item in r["metric_config"]["config"].get("other_properties", []):
            for ev in item.get("evidence") or []:
                ev = ev.strip()
                if len(ev.split()) >= 8:
                    pairs.append(Pair(question, ev))
                    pairs.append(Pair(item["criterion"].strip(), ev))
    multi = json.loads((SHARED / "scholarqabench" / "scholarqa_multi" / "human_answers_dev.json").read_text())
    for r in multi:
        for ctx in r.get("ctxs") or []:
            pairs += [Pair(r["input"].strip(), t) for t in _ctx_texts(texts, ctx)[:1]]
    return pairs


def general_sci(texts: PassageTexts) -> list[Pair]:
    pairs = []
    for d in read_jsonl(SHARED / "beir" / "scifact" / "corpus.jsonl"):
        if d.get("title", "").strip():
            first = texts.of(d["_id"], f"{d['title']} {d['text']}".strip())[0]
            pairs.append(Pair(d["title"].strip(), first))
    return pairs


def downsample(pairs: list[Pair], cap: int, seed: int) -> list[Pair]:
    queries = sorted({p.query for p in pairs})
    random.Random(seed).shuffle(queries)
    keep = set(queries[:cap])
    return [p for p in pairs if p.query in keep]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datastore", type=Path, default=REPO / ".cache" / "openscholar" / "datastore")
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "openscholar" / "router_pairs")
    ap.add_argument("--multitask-cap", type=int, default=400, help="Queries per domain in the multitask union.")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--dev-claims", type=int, default=100, help="SciFact train claims held out of bio-claims (and multitask).")
    args = ap.parse_args()
    ds = Datastore.open(args.datastore)
    texts = PassageTexts(ds)
    built = {"bio-claims": bio_claims(texts, args.dev_claims), "bio-qa": bio_qa(texts), "cs-multi": cs_multi(texts), "general-sci": general_sci(texts)}
    union: list[Pair] = []
    for name, pairs in built.items():
        union += downsample(pairs, args.multitask_cap, args.seed)
    built["multitask"] = union
    stats = {}
    for name, pairs in built.items():
        n = write_pairs(args.out / f"{name}.jsonl", pairs)
        stats[name] = {"pairs": n, "queries": len({p.query for p in pairs})}
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
