"""Labelled (statement, evidence, relation) pairs for the 3-way support judge, split by claim/question.

Sources (nothing else is read):

- SciFact TRAIN claims (the claims of ``qrels/train.tsv``; labels from ``queries.jsonl`` metadata):
  the window holding a SUPPORT rationale -> supports, a CONTRADICT rationale -> contradicts, the
  most word-similar non-rationale window of the same abstract and a window of another abstract
  (BM25 neighbour) -> neither. Claims that cite an abstract of the ScholarQABench SciFact test set
  (the 208) are dropped, and those abstracts are never used as negatives: zero overlap in claim
  text and doc ids (`overlap_report`).
- ScholarQA-Multi dev: each expert-answer sentence with a context it cites -> supports, with a
  context of the same question it does not cite -> neither.
- Synthetic hard negatives from supported pairs (`openscholar.judges.perturb`): negated and
  reversed statements and changed numbers -> contradicts; a swapped entity -> neither.

Splits: a group is a SciFact claim cluster (claims citing a common abstract, so the negated twin
of a claim never lands on the other side) or a Multi question; a stable hash of the group puts it
in ``train`` or ``dev`` (held apart: model selection and the reported figures).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from openscholar.judges import perturb
from openscholar.judges.lexical import content_words
from openscholar.judges.protocol import Relation
from openscholar.sentences import Span, sentence_spans, windows

SCIFACT_TEST_FILE = "single_paper_tasks/scifact_test.jsonl"
MULTI_FILE = "scholarqa_multi/human_answers_dev.json"
_CITE = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class JudgePair:
    group: str  # "scifact:<cluster>" or "multi:<question index>": the unit of the split
    statement: str
    evidence: str
    label: Relation
    source: str  # scifact-support | scifact-contradict | scifact-same-doc | scifact-other-doc | multi-cited
    #              | multi-uncited | synth-negate | synth-reverse | synth-number | synth-entity


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split_of(group: str, dev_fraction: float, salt: str = "judge3") -> str:
    """``dev`` for a stable ``dev_fraction`` of groups, else ``train``."""
    digest = hashlib.sha256(f"{salt}:{group}".encode()).digest()
    return "dev" if int.from_bytes(digest[:4], "big") / 2**32 < dev_fraction else "train"


def _window_texts(text: str, size: int) -> list[tuple[set[int], str]]:
    spans = sentence_spans(text)
    return [(set(range(a, b)), text[spans[a].start:spans[b - 1].end]) for a, b in windows(spans, size)]


def _closest(statement: str, cands: list[tuple[set[int], str]], avoid: set[int]) -> str | None:
    words = content_words(statement)
    scored = [(len(words & content_words(t)), -min(ix), t) for ix, t in cands if not (ix & avoid)]
    return max(scored)[2] if scored else None


# -- the ScholarQABench SciFact test set (never trained on) ------------------------------------
def test_claims_and_docs(scholarqabench: Path, corpus: dict[str, dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(claim texts, corpus doc ids) of the ScholarQABench SciFact 208: docs matched by title, then text."""
    rows = read_jsonl(scholarqabench / SCIFACT_TEST_FILE)
    by_title: dict[str, set[str]] = {}
    by_text: dict[str, str] = {}
    for did, d in corpus.items():
        by_title.setdefault(_norm(d.get("title", "")), set()).add(did)
        by_text[_norm(d["text"])[:200]] = did
    docs: set[str] = set()
    for r in rows:
        for ctx in r["gold_ctx"]:
            docs |= by_title.get(_norm(ctx.get("title", "")), set()) if ctx.get("title") else set()
            hit = by_text.get(_norm(ctx.get("text", ""))[:200])
            if hit:
                docs.add(hit)
    return {_norm(r["input"]) for r in rows}, docs


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


# -- SciFact ----------------------------------------------------------------------------------
def _clusters(claims: list[dict[str, Any]], cited: dict[str, set[str]]) -> dict[str, str]:
    """claim id -> cluster id (the smallest claim id sharing an abstract with it, transitively)."""
    parent = {q["_id"]: q["_id"] for q in claims}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    by_doc: dict[str, list[str]] = {}
    for q in claims:
        for d in cited.get(q["_id"], set()) | set(q.get("metadata") or {}):
            by_doc.setdefault(d, []).append(q["_id"])
    for ids in by_doc.values():
        for other in ids[1:]:
            a, b = find(ids[0]), find(other)
            if a != b:
                parent[max(a, b, key=_id_key)] = min(a, b, key=_id_key)
    return {q["_id"]: find(q["_id"]) for q in claims}


def _id_key(x: str) -> tuple[int, str]:
    return (int(x), x) if x.isdigit() else (1 << 30, x)


def scifact_pairs(scifact: Path, scholarqabench: Path, *, window: int = 2, seed: int = 0,
                  other_docs: int = 1) -> tuple[list[JudgePair], dict[str, Any]]:
    """SciFact train-claim pairs and a report of what was excluded for the 208 test claims."""
    import bm25s

    rng = random.Random(seed)
    corpus = {d["_id"]: d for d in read_jsonl(scifact / "corpus.jsonl")}
    test_texts, test_docs = test_claims_and_docs(scholarqabench, corpus)
    cited: dict[str, set[str]] = {}
    for line in (scifact / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        if line.strip():
            qid, did, _ = line.split("\t")
            cited.setdefault(qid, set()).add(did)
    all_claims = [q for q in read_jsonl(scifact / "queries.jsonl") if q["_id"] in cited]
    claims = [q for q in all_claims if _norm(q["text"]) not in test_texts
              and not ((cited[q["_id"]] | set(q.get("metadata") or {})) & test_docs)]
    cluster = _clusters(claims, cited)

    doc_ids = [d for d in corpus if d not in test_docs]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([f"{corpus[d].get('title', '')} {corpus[d]['text']}" for d in doc_ids],
                                   stopwords="en", show_progress=False), show_progress=False)
    found, _ = retriever.retrieve(bm25s.tokenize([q["text"] for q in claims], stopwords="en", show_progress=False),
                                  k=other_docs + 8, show_progress=False)
    pairs: list[JudgePair] = []
    for row, q in enumerate(claims):
        qid, text, meta = q["_id"], q["text"], q.get("metadata") or {}
        group = f"scifact:{cluster[qid]}"
        for doc_id, evidence in meta.items():
            wins = _window_texts(corpus[doc_id]["text"], window)
            rationale = {i for e in evidence for i in e["sentences"]}
            for e in evidence:
                relation: Relation = "supports" if e["label"] == "SUPPORT" else "contradicts"
                sents = set(e["sentences"])
                hits = [t for ix, t in wins if ix & sents]
                for t in rng.sample(hits, min(2, len(hits))):
                    source = "scifact-support" if relation == "supports" else "scifact-contradict"
                    pairs.append(JudgePair(group, text, t, relation, source))
            neg = _closest(text, wins, rationale)
            if neg:
                pairs.append(JudgePair(group, text, neg, "neither", "scifact-same-doc"))
        known = cited[qid] | set(meta)
        for i in [i for i in found[row].tolist() if doc_ids[i] not in known][:other_docs]:
            neg = _closest(text, _window_texts(corpus[doc_ids[i]]["text"], window), set())
            if neg:
                pairs.append(JudgePair(group, text, neg, "neither", "scifact-other-doc"))
    report = {
        "train_claims": len(all_claims),
        "used_claims": len(claims),
        "dropped_for_test_overlap": len(all_claims) - len(claims),
        "test_claims": len(test_texts),
        "test_docs_matched": len(test_docs),
        "claim_text_overlap": len({_norm(q["text"]) for q in claims} & test_texts),
        "doc_overlap": len({d for q in claims for d in cited[q["_id"]] | set(q.get("metadata") or {})} & test_docs),
        "used_claim_ids": sorted((q["_id"] for q in claims), key=_id_key),
    }
    return pairs, report


# -- ScholarQA-Multi --------------------------------------------------------------------------
def multi_pairs(scholarqabench: Path, *, max_words: int = 160) -> list[JudgePair]:
    """Expert sentences with the contexts they cite (supports) and those they do not (neither)."""
    data = json.loads((scholarqabench / MULTI_FILE).read_text(encoding="utf-8"))
    pairs: list[JudgePair] = []
    for qi, record in enumerate(data):
        ctxs = record["ctxs"]
        group = f"multi:{record.get('id', qi)}"
        for statement, cites in expert_sentences(record["output"]):
            valid = [c for c in cites if 0 <= c < len(ctxs)]
            if not valid:
                continue
            for c in [c for c in range(len(ctxs)) if str(ctxs[c].get("text") or "").strip()]:
                evidence = _cut(str(ctxs[c].get("text") or ""), max_words)
                label: Relation = "supports" if c in valid else "neither"
                pairs.append(JudgePair(group, statement, evidence, label, "multi-cited" if c in valid
                                       else "multi-uncited"))
    return pairs


def expert_sentences(output: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, cited ids) of an expert answer; markers after the period count."""
    out: list[tuple[str, list[int]]] = []
    text = " ".join(output.split())
    for span in sentence_spans(text):
        s = span.text
        lead = re.match(r"^((?:\[\d+\]\s*)+)", s)
        if lead and out:
            out[-1][1].extend(int(n) for n in _CITE.findall(lead.group(1)))
            s = s[lead.end():]
        cites = [int(n) for n in _CITE.findall(s)]
        clean = re.sub(r"\s+([.,;:])", r"\1", _CITE.sub("", s)).strip()
        if len(clean.split()) >= 5:
            out.append((clean, cites))
    return out


def _cut(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words])


# -- synthetic hard negatives -----------------------------------------------------------------
def synthetic_pairs(supported: Iterable[JudgePair], seed: int = 0) -> list[JudgePair]:
    """One perturbed statement per rule that applies, for each supported pair."""
    rng = random.Random(seed)
    supported = list(supported)
    pool = sorted({e for p in supported for e in perturb.entities(p.statement)})
    out: list[JudgePair] = []
    seen: set[tuple[str, str]] = set()
    for p in supported:
        if (p.statement, p.evidence) in seen:
            continue
        seen.add((p.statement, p.evidence))
        made: list[tuple[str | None, Relation, str]] = [
            (perturb.negate(p.statement), "contradicts", "synth-negate"),
            (perturb.reverse(p.statement), "contradicts", "synth-reverse"),
            (perturb.change_number(p.statement, rng), "contradicts", "synth-number"),
            (perturb.swap_entity(p.statement, pool, rng), "neither", "synth-entity"),
        ]
        for statement, label, source in made:
            if statement and statement != p.statement:
                out.append(JudgePair(p.group, statement, p.evidence, label, source))
    return out


def build_judge_pairs(scifact: Path, scholarqabench: Path, *, dev_fraction: float = 0.2,
                      multi_dev_fraction: float = 0.5, seed: int = 0, window: int = 2) -> dict[str, Any]:
    """``{"train": [...], "dev": [...], "report": {...}}``: every source, split by group."""
    sci, report = scifact_pairs(scifact, scholarqabench, window=window, seed=seed)
    multi = multi_pairs(scholarqabench)
    splits: dict[str, list[JudgePair]] = {"train": [], "dev": []}
    for p in sci:
        splits[split_of(p.group, dev_fraction)].append(p)
    for p in multi:
        splits[split_of(p.group, multi_dev_fraction)].append(p)
    for name in ("train", "dev"):
        supported = [p for p in splits[name] if p.label == "supports"]
        splits[name] += synthetic_pairs(supported, seed=seed + (name == "dev"))
    counts = {name: _counts(ps) for name, ps in splits.items()}
    return {"train": splits["train"], "dev": splits["dev"], "report": {"scifact": report, "counts": counts,
                                                                        "dev_fraction": dev_fraction,
                                                                        "multi_dev_fraction": multi_dev_fraction,
                                                                        "window_sentences": window, "seed": seed}}


def _counts(pairs: list[JudgePair]) -> dict[str, Any]:
    by_source: dict[str, int] = {}
    by_label: dict[str, int] = {}
    for p in pairs:
        by_source[p.source] = by_source.get(p.source, 0) + 1
        by_label[p.label] = by_label.get(p.label, 0) + 1
    return {"pairs": len(pairs), "groups": len({p.group for p in pairs}), "by_label": by_label,
            "by_source": dict(sorted(by_source.items()))}


def save_pairs(pairs: list[JudgePair], path: Path) -> None:
    path.write_text("".join(json.dumps(asdict(p)) + "\n" for p in pairs), encoding="utf-8")


def load_pairs(path: Path) -> list[JudgePair]:
    return [JudgePair(**row) for row in read_jsonl(path)]


__all__ = ["JudgePair", "Span", "build_judge_pairs", "expert_sentences", "load_pairs", "multi_pairs",
           "save_pairs", "scifact_pairs", "split_of", "synthetic_pairs", "test_claims_and_docs"]
