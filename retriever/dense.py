"""Dense retrieval: a query encoder over a datastore's vector indexes."""

from __future__ import annotations

from collections.abc import Sequence

from datastore.datastore import Datastore
from datastore.errors import EncoderMismatch
from retriever.protocols import Hit, QueryEncoder, Routing, Scored, fetch_hits, scored


class DenseRetriever:
    """Encodes queries with ``encoder`` and searches every shard of ``datastore``."""

    stage = "dense"

    def __init__(self, datastore: Datastore, encoder: QueryEncoder) -> None:
        if encoder.model_id != datastore.encoder_id or encoder.dim != datastore.dim:
            raise EncoderMismatch(
                f"datastore at {datastore.root} was built with encoder {datastore.encoder_id} "
                f"(dim {datastore.dim}) but the query encoder is {encoder.model_id} (dim {encoder.dim})",
                hint="rebuild the datastore with this encoder or set embedder.model to the one it was built with",
            )
        _check_encoding(datastore, encoder)
        self.datastore = datastore
        self.encoder = encoder

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        hits, _ = self.search_batch_routed(queries, k)
        return hits

    def search_batch_routed(
        self, queries: Sequence[str], k: int = 10
    ) -> tuple[list[list[Hit]], list[Routing] | None]:
        """Hits per query plus the encoder's routing decision per query (None for a plain encoder)."""
        ranked, routing = self.search_ids_routed(queries, k)
        return [fetch_hits(self.datastore, r) for r in ranked], routing

    def search_ids_routed(
        self, queries: Sequence[str], k: int = 10
    ) -> tuple[list[list[Scored]], list[Routing] | None]:
        """`search_batch_routed` without reading the passages: ids and scores per query."""
        encoded = self.encoder.encode_queries(list(queries))
        scores, ids = self.datastore.search(encoded.vectors, k)
        out = [
            scored([(int(i), float(s)) for i, s in zip(ids[row], scores[row], strict=True) if i >= 0], self.stage)
            for row in range(len(queries))
        ]
        return out, encoded.routing


def _check_encoding(datastore: Datastore, encoder: QueryEncoder) -> None:
    """Queries must be pooled and normalized as the datastore's passages were (its manifest says how).

    Checked where the encoder says (``pooling``/``normalized`` attributes); a wrong pooling ranks by
    another space altogether, a wrong normalization changes every score.
    """
    want = datastore.manifest.encoder
    pooling = getattr(encoder, "pooling", None)
    normalized = getattr(encoder, "normalized", None)
    wrong = []
    if pooling is not None and pooling != want.pooling:
        wrong.append(f"{pooling} pooling (the passages: {want.pooling})")
    if normalized is not None and bool(normalized) != want.normalized:
        wrong.append(f"{'normalized' if normalized else 'unnormalized'} vectors (the passages: "
                     f"{'normalized' if want.normalized else 'unnormalized'})")
    if wrong:
        raise EncoderMismatch(
            f"datastore at {datastore.root} was embedded by {want.id} with {want.pooling} pooling, "
            f"{'normalized' if want.normalized else 'unnormalized'}; the query encoder gives {' and '.join(wrong)}",
            hint=f"set embedder.pooling = \"{want.pooling}\" and embedder.normalize = {str(want.normalized).lower()} "
            "(OPENSCHOLAR_EMBEDDER__POOLING / OPENSCHOLAR_EMBEDDER__NORMALIZE)",
        )
