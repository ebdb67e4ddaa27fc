"""Typed configuration of the datastore layer (composed into ``openscholar.settings.Settings``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from datastore.strict import StrictModel

IndexKind = Literal["auto", "flat", "ivfpq", "hnsw"]

SCIFACT_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip"


class ChunkingConfig(StrictModel):
    """How papers become passages (the reference: ~256 words, title-prefixed, last chunk kept)."""

    words: int = Field(256, ge=4, description="Target passage length in whitespace words.")
    min_last_words: int = Field(
        1, ge=1, description="A trailing chunk shorter than this is dropped (1 keeps every chunk)."
    )
    title_prefix: bool = Field(True, description="Prefix each passage with its paper title when embedded.")


class IVFPQConfig(StrictModel):
    """IVF-PQ compressed index; the short list is re-scored exactly from stored vectors."""

    nlist: int = Field(0, ge=0, description="Number of inverted lists; 0 picks ~4*sqrt(n).")
    m: int = Field(48, ge=1, description="PQ sub-quantizers (bytes per vector at 8 bits).")
    nbits: int = Field(8, ge=4, le=12, description="Bits per PQ sub-quantizer code.")
    nprobe: int = Field(
        0,
        ge=0,
        description="Inverted lists visited per query; 0 (auto) = 64, and sqrt(nlist) beyond nlist 4096 (probed "
        "share 1/sqrt(nlist): the scan grows as N^0.75, not N). On synthetic 1M data recall@10 did not change "
        "from nprobe 16 to 256 (nlist 4000): the short list, not nprobe, limits it (docs/dev-notes/scale10m.md).",
    )
    rescore: int = Field(
        1000,
        ge=0,
        description="Short-list size re-scored exactly from the fp16 vectors (0: no re-scoring). 1000: recall@10 "
        "0.9955 vs 0.93 at 200 on topic-clustered synthetic 1M data, +0.7 ms per query on one core with the "
        "vectors in the page cache (1000 row reads per query when they are not; docs/dev-notes/scale10m.md).",
    )
    prefetch: bool = Field(
        True,
        description="Queue the short list's row reads all at once (madvise WILLNEED) before re-scoring, so rows "
        "not in the page cache are read in parallel, not one page fault at a time: 1000 cold rows per query "
        "85 -> 13 ms on the dev VM's virtual disk (1384 ms as it was, with the VM's 8 MB read-around per fault); "
        "+0.8 ms when the rows are cached. Off only for datastores that stay in RAM (docs/dev-notes/rescore-io.md).",
    )


class HNSWConfig(StrictModel):
    """HNSW graph index over full-precision vectors."""

    m: int = Field(32, ge=4, description="Graph degree.")
    ef_construction: int = Field(200, ge=8, description="Candidate list size while building.")
    ef_search: int = Field(128, ge=8, description="Candidate list size while searching.")


class DatastoreConfig(StrictModel):
    """Where the datastore lives and how it is built and searched."""

    path: Path = Field(
        Path("~/.cache/openscholar/datastore"),
        description="Datastore directory used by search, ask, serve and worker.",
    )
    index: IndexKind = Field("auto", description="Vector index kind; auto picks by passage count.")
    part_papers: int = Field(
        10_000, ge=1, description="Papers (source records) per part: the unit of build work and of resumption."
    )
    compress_text: bool = Field(
        True, description="Store passage text zlib-compressed in passages.sqlite (about 2x less disk for prose)."
    )
    shard_size: int = Field(
        50_000, ge=1, description="Format 1 setting, kept so that old config files load; format 2 sizes parts by part_papers."
    )
    batch_size: int = Field(64, ge=1, description="Passages embedded per batch while building.")
    auto_flat_max: int = Field(
        200_000, ge=0, description="With index=auto, datastores up to this many passages use flat (exact)."
    )
    auto_hnsw_max: int = Field(
        2_000_000, ge=0, description="With index=auto, larger datastores up to this use HNSW, beyond it IVF-PQ."
    )
    max_index_ram_gb: float = Field(
        16.0,
        gt=0,
        description="RAM an index may hold resident. index=auto never picks flat or HNSW (full-precision "
        "vectors in RAM) beyond it, whatever the passage count; a fourth of a 64 GB node by default.",
    )
    build_memory_mb: int = Field(
        2048,
        ge=64,
        description="RAM bound while building the index: IVF-PQ training sample (half), add batches and "
        "buffered codes before they spill to disk; FAISS's PQ training adds ~0.4 GB at 768-d. Independent "
        "of the corpus size; 16384 for nlist ~61k (237M passages).",
    )
    strict: bool = Field(False, description="Fail a build on the first malformed source record.")
    verify: Literal["fast", "full"] = Field(
        "fast", description="Verification when opening: fast (sizes and counts) or full (checksums too)."
    )
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    ivfpq: IVFPQConfig = Field(default_factory=IVFPQConfig)
    hnsw: HNSWConfig = Field(default_factory=HNSWConfig)


class CorpusConfig(StrictModel):
    """The default corpus: BEIR SciFact plus the ScholarQABench dev contexts when present."""

    scifact_dir: Path | None = Field(
        None, description="Local BEIR SciFact directory (corpus.jsonl); used when it exists."
    )
    scifact_url: str = Field(SCIFACT_URL, description="Public URL of BEIR SciFact, downloaded when no local copy exists.")
    scholarqabench_dir: Path | None = Field(
        None, description="Local ScholarQABench data directory whose contexts join the default datastore."
    )
