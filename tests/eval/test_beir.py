"""BEIR metrics against the reference implementations (pytrec_eval, ranx) and the eval command."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from datastore.models import Passage
from eval.beir import (
    documents_of,
    evaluate_run,
    load_qrels,
    load_queries,
    mrr_at,
    ndcg_at,
    recall_at,
)
from retriever.protocols import Hit


def _fixture(seed: int) -> tuple[dict[str, list[str]], dict[str, dict[str, int]]]:
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(300)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, list[str]] = {}
    for q in range(25):
        qid = f"q{q}"
        rel = rng.sample(docs, rng.randint(1, 6))
        qrels[qid] = {d: rng.choice([1, 1, 2, 3]) for d in rel}
        if q % 5 == 0:
            qrels[qid][rng.choice(docs)] = 0  # judged non-relevant
        ranked = rng.sample(docs, 150)
        # Put some relevant documents near the top so that every metric sees non-trivial values.
        for d in rel[: rng.randint(0, len(rel))]:
            ranked.remove(d) if d in ranked else None
            ranked.insert(rng.randint(0, 20), d)
        run[qid] = ranked[:120]
    run.pop("q3")  # a judged query with no run scores 0
    return run, qrels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_pytrec_eval(seed: int) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run, qrels = _fixture(seed)
    # pytrec_eval ranks by score: strictly decreasing scores keep our order.
    scored = {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in run.items()}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "recip_rank"}).evaluate(scored)
    ours = evaluate_run(run, qrels)
    n = len(qrels)
    assert ours["ndcg@10"] == pytest.approx(sum(r["ndcg_cut_10"] for r in ref.values()) / n, abs=1e-9)
    assert ours["recall@100"] == pytest.approx(sum(r["recall_100"] for r in ref.values()) / n, abs=1e-9)
    for qid, docs in run.items():
        assert ndcg_at(docs, qrels[qid], 10) == pytest.approx(ref[qid]["ndcg_cut_10"], abs=1e-9)
        assert recall_at(docs, qrels[qid], 100) == pytest.approx(ref[qid]["recall_100"], abs=1e-9)
    # MRR@10 is recip_rank on runs cut at 10.
    cut = {q: {d: float(10 - i) for i, d in enumerate(docs[:10])} for q, docs in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
    assert ours["mrr@10"] == pytest.approx(sum(r["recip_rank"] for r in rr.values()) / n, abs=1e-9)


def test_hand_computed_values() -> None:
    rels = {"a": 2, "b": 1, "z": 0}
    assert mrr_at(["x", "b", "a"], rels) == pytest.approx(0.5)
    assert mrr_at(["x"] * 10 + ["a"], rels) == 0.0
    # DCG = 1/log2(3) + 2/log2(4); IDCG = 2 + 1/log2(3)
    assert ndcg_at(["x", "b", "a"], rels) == pytest.approx((1 / 1.5849625 + 1.0) / (2 + 1 / 1.5849625), rel=1e-6)
    assert recall_at(["a", "z"], rels) == 0.5


def test_document_scored_by_its_best_passage() -> None:
    def h(pid: int, paper: str) -> Hit:
        return Hit(Passage(pid, paper, "", ""), 1.0)

    hits = [h(1, "B"), h(2, "A"), h(3, "B"), h(4, "C"), h(5, "A")]
    assert documents_of(hits) == ["B", "A", "C"]
    assert ndcg_at(documents_of(hits), {"A": 1}) == pytest.approx(1 / 1.5849625)


def test_loaders(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text('{"_id": "1", "text": "a claim"}\n\n{"_id": 2, "text": "b"}\n')
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n1\t10\t1\n1\t11\t0\n2\t12\t2\n")
    assert load_queries(tmp_path / "q.jsonl") == {"1": "a claim", "2": "b"}
    assert load_qrels(tmp_path / "qrels.tsv") == {"1": {"10": 1, "11": 0}, "2": {"12": 2}}
    assert evaluate_run({}, load_qrels(tmp_path / "qrels.tsv"))["queries"] == 2


def test_eval_beir_command_matches_pytrec_eval(small_datastore: Path, scifact_subset: dict, tmp_path: Path) -> None:
    """`openscholar eval beir --pipeline bm25 --json` on the small datastore: keys and values."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from typer.testing import CliRunner

    from cli.main import app

    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in scifact_subset["claims"].items()))
    qrels_path = tmp_path / "qrels.tsv"
    qrels = scifact_subset["qrels"]
    qrels_path.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, ds in qrels.items() for d, r in ds.items()))
    run_out = tmp_path / "run.json"
    result = CliRunner().invoke(app, [
        "eval", "beir", "--datastore", str(small_datastore), "--queries", str(queries), "--qrels", str(qrels_path),
        "--pipeline", "bm25", "--json", "--no-progress", "--run-out", str(run_out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert {"ndcg@10", "recall@100", "mrr@10", "latency_p50_ms"} <= set(summary) and summary["queries"] == 40
    run = json.loads(run_out.read_text())
    assert all(len(set(docs)) == len(docs) <= 100 for docs in run.values())
    scored = {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in run.items()}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(scored)
    assert summary["ndcg@10"] == pytest.approx(sum(r["ndcg_cut_10"] for r in ref.values()) / len(qrels), abs=1e-4)
    assert summary["ndcg@10"] > 0.6  # BM25 on SciFact claims over 400 abstracts
