"""Shared fixtures: the shared data, the packaged embedder, a small real SciFact datastore."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OPENSCHOLAR_TEST_SHARED", REPO.parent / "shared")).resolve()
SHARED_DATA = SHARED / "data"
SCIFACT = SHARED_DATA / "beir" / "scifact"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    return qrels


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SCIFACT.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def embedder():
    """The packaged all-MiniLM-L6-v2, loaded once for the whole session."""
    from retriever.st_embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder().warm_up()


@pytest.fixture(scope="session")
def scifact_subset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real SciFact slice: gold abstracts of 40 train claims plus other abstracts (200 in all), as BEIR dir."""
    corpus = read_jsonl(SCIFACT / "corpus.jsonl")
    queries = {q["_id"]: q["text"] for q in read_jsonl(SCIFACT / "queries.jsonl")}
    qrels = read_qrels(SCIFACT / "qrels" / "train.tsv")
    chosen = sorted(qrels)[:40]
    gold = {d for q in chosen for d in qrels[q]}
    others = [d for d in corpus if d["_id"] not in gold]
    random.Random(0).shuffle(others)
    docs = [d for d in corpus if d["_id"] in gold] + others[: 200 - len(gold)]
    root = tmp_path_factory.mktemp("scifact-subset")
    with (root / "corpus.jsonl").open("w") as fh:
        for d in docs:
            fh.write(json.dumps(d) + "\n")
    return {
        "dir": root,
        "docs": {d["_id"]: d for d in docs},
        "claims": {q: queries[q] for q in chosen},
        "qrels": {q: qrels[q] for q in chosen},
    }


@pytest.fixture(scope="session")
def small_datastore(scifact_subset: dict, embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete datastore over the SciFact slice, built once per session with the real embedder."""
    from datastore.builder import DatastoreBuilder
    from datastore.config import DatastoreConfig

    out = tmp_path_factory.mktemp("ds") / "scifact-small"
    DatastoreBuilder(embedder, DatastoreConfig(part_papers=80), progress=False).build(
        [f"beir:{scifact_subset['dir']}"], out
    )
    return out
