"""``choose_kind``: which index a datastore of n passages gets, by count AND by the RAM it would need.

Flat and HNSW keep every vector in RAM as float32 (HNSW adds its graph), so at 237M x 768-d they
would need ~725 GB; ``auto`` never picks them beyond ``datastore.max_index_ram_gb``, and an explicit
choice that cannot fit is refused with a hint rather than discovered by the OOM killer.
"""

from __future__ import annotations

from datastore.config import DatastoreConfig
from datastore.errors import DatastoreError

GB = 1024**3


def ram_bytes(kind: str, n: int, dim: int, config: DatastoreConfig) -> int:
    """Resident bytes of an index of ``kind`` over n vectors (IVF-PQ: codes are memory-mapped)."""
    if kind == "flat":
        return n * dim * 4
    if kind == "hnsw":
        m = config.hnsw.m
        return n * (dim * 4 + 2 * m * 4 + m * 4 // 8 + 8)  # vectors + level-0 links + upper levels
    if kind == "ivfpq":
        nlist = config.ivfpq.nlist or int(4 * n**0.5)
        return nlist * dim * 4 + dim * 256 * 4  # quantizer + PQ codebooks; lists are mapped
    raise DatastoreError(f"unknown index kind {kind!r}", hint="use one of: auto, flat, hnsw, ivfpq")


def choose_kind(n_passages: int, dim: int, config: DatastoreConfig) -> str:
    """The index kind for a datastore of ``n_passages`` ``dim``-d vectors under ``config``."""
    budget = int(config.max_index_ram_gb * GB)
    if config.index != "auto":
        need = ram_bytes(config.index, n_passages, dim, config)
        if config.index in ("flat", "hnsw") and need > budget:
            raise DatastoreError(
                f"a {config.index} index of {n_passages:,} x {dim}-d vectors needs {need / GB:.1f} GB of RAM, "
                f"more than datastore.max_index_ram_gb = {config.max_index_ram_gb:g}",
                hint="use datastore.index = ivfpq (or auto), or raise datastore.max_index_ram_gb",
            )
        return config.index
    if n_passages <= config.auto_flat_max and ram_bytes("flat", n_passages, dim, config) <= budget:
        return "flat"
    if n_passages <= config.auto_hnsw_max and ram_bytes("hnsw", n_passages, dim, config) <= budget:
        return "hnsw"
    return "ivfpq"
