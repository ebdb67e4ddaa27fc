"""Building the router's query encoder from typed config (the composition root calls this)."""

from __future__ import annotations

import logging
from pathlib import Path

from retriever.config import EmbedderConfig
from retriever.st_embedder import SentenceTransformerEmbedder
from router.backbone import Backbone
from router.config import RouterConfig, resolve_experts_dir
from router.encoder import RouterQueryEncoder

log = logging.getLogger(__name__)


def build_router_encoder(
    router: RouterConfig,
    embedder_config: EmbedderConfig,
    cache_dir: Path,
    embedder: object | None = None,
) -> RouterQueryEncoder:
    """A RouterQueryEncoder over the configured base encoder and experts directory.

    The router shares the base embedder's loaded model (``embedder``, else one built from
    ``embedder_config``) and follows its bf16 decision, so routing sees the base query vectors
    dense search would.
    """
    if embedder_config.query_prefix:
        log.warning("router experts ignore embedder.query_prefix %r", embedder_config.query_prefix)
    if embedder is None:
        embedder = SentenceTransformerEmbedder(embedder_config)
    shared = embedder if isinstance(embedder, SentenceTransformerEmbedder) and embedder.model_id == embedder_config.model else None
    st_model = shared._load if shared is not None else None  # noqa: SLF001 - shared weights, loaded lazily
    bf16 = (lambda: shared.uses_bf16) if shared is not None else embedder_config.precision == "bf16"
    backbone = Backbone(embedder_config.model, threads=embedder_config.threads, st_model=st_model)
    return RouterQueryEncoder(
        backbone,
        resolve_experts_dir(router, cache_dir),
        experts=router.experts,
        bf16=bf16,
        batch_size=embedder_config.batch_size,
        weighting=router.pilot_weighting,
        knn=router.pilot_knn,
        routing=router.routing,
    )
