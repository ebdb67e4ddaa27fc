"""RouterQueryEncoder: routes each query to one expert by its pilot embeddings, then encodes it.

Satisfies ``retriever.protocols.QueryEncoder`` with the BASE encoder's ``model_id``/``dim``: the
passages (datastore vectors) are the base's, unchanged; only the query side moves.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retriever.protocols import QueryVectors, Routing
from router.backbone import Backbone
from router.errors import ExpertMismatch, NoExperts
from router.experts import Expert, ExpertStore
from router.head import RoutingHead
from router.pilots import Pilots

log = logging.getLogger(__name__)


WEIGHTINGS = ("count", "uniform", "nearest", "knn")
ROUTINGS = ("head", "pilots")


def knn_votes(q: np.ndarray, members: np.ndarray, owner: np.ndarray, n_experts: int, k: int) -> np.ndarray:
    """(n, experts): the cosine mass each expert holds among a query's ``k`` nearest pilot queries,
    divided by k (the finest pilots: every pilot query votes for the expert that served it best)."""
    sims = q @ members.T
    k = min(k, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    out = np.zeros((len(q), n_experts), dtype=np.float32)
    for i, row in enumerate(top):
        np.add.at(out[i], owner[row], sims[i, row])
    return out / k


def pilot_similarities(
    base_vectors: np.ndarray, pilot_vecs: np.ndarray, pilot_owner: np.ndarray, pilot_count: np.ndarray,
    member_vecs: np.ndarray, member_owner: np.ndarray, n_experts: int, weighting: str, knn: int,
) -> np.ndarray:
    """(n, experts) routing scores of queries under ``weighting`` (see ``RouterConfig.pilot_weighting``):
    mean cosine to each expert's pilot centroids (count-weighted or uniform), the closest centroid
    ("nearest"), or the k-nearest pilot queries' votes ("knn"). An expert without pilots scores -inf."""
    q = base_vectors / np.linalg.norm(base_vectors, axis=1, keepdims=True).clip(min=1e-12)
    if weighting == "knn" and len(member_vecs):
        return knn_votes(q, member_vecs, member_owner, n_experts, knn)
    sims = q @ pilot_vecs.T if len(pilot_vecs) else np.zeros((len(q), 0), np.float32)
    out = np.full((len(q), n_experts), -np.inf, dtype=np.float32)
    for j in range(n_experts):
        own = pilot_owner == j
        if not own.any():
            continue
        if weighting == "nearest":  # the closest of the expert's pilots decides
            out[:, j] = sims[:, own].max(axis=1)
            continue
        w = pilot_count[own] if weighting == "count" else np.ones(int(own.sum()), np.float32)
        out[:, j] = sims[:, own] @ w / w.sum()
    return out


class RouterQueryEncoder:
    """Base-embed the query, pick the top-1 expert, encode the query with it.

    ``routing="pilots"`` picks by the query's similarity to each expert's pilots (the paper);
    ``routing="head"`` by the trained routing head (`router.head`) over an early base layer of the
    same forward pass, falling back to pilots (with a warning) where no head was fitted.
    Every encoded query carries its `Routing`: the expert chosen, the rule that chose it, the pilot
    similarities and, under the head, its probabilities. Experts load lazily (merged LoRA, one plain forward per query batch).
    """

    def __init__(
        self,
        backbone: Backbone,
        experts_dir: Path,
        *,
        experts: Sequence[str] | None = None,
        bf16: bool | Callable[[], bool] = False,
        batch_size: int = 64,
        weighting: str = "count",
        knn: int = 8,
        routing: str = "pilots",
    ) -> None:
        self.backbone = backbone
        self.model_id = backbone.model_name
        self.experts_dir = Path(experts_dir)
        self.only = list(experts) if experts is not None else None
        self._bf16 = bf16
        self.batch_size = batch_size
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, not {weighting!r}")
        self.weighting = weighting
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, not {routing!r}")
        self.routing = routing
        self.head: RoutingHead | None = None
        self.knn = max(1, int(knn))
        self._member_vecs = np.zeros((0, 0), np.float32)
        self._member_owner = np.zeros(0, np.int64)
        self._lock = threading.Lock()
        self._ready = False
        self._experts: dict[str, Expert] = {}
        self._models: dict[str, Any] = {}
        self._names: list[str] = []
        self._pilot_vecs = np.zeros((0, 0), np.float32)
        self._pilot_owner = np.zeros(0, np.int64)
        self._pilot_count = np.zeros(0, np.float32)

    # -- loading --------------------------------------------------------------------------------
    def warm_up(self) -> RouterQueryEncoder:
        self._load()
        for name in self._names:
            self._model(name)
        return self

    def _load(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            store = ExpertStore(self.experts_dir)
            pilots = Pilots.load(self.experts_dir)
            names = [n for n in pilots.experts if n in store.names()]
            if self.only is not None:
                names = [n for n in names if n in self.only]
            if not names:
                raise NoExperts(
                    f"no expert with pilots in {self.experts_dir}",
                    hint="train experts (`openscholar router train-expert`) and compute pilots (`openscholar router pilots`)",
                )
            for n in names:
                e = store.get(n)
                if e.manifest.base_model != self.model_id:
                    raise ExpertMismatch(
                        f"expert {n} was trained on {e.manifest.base_model} but the base encoder is {self.model_id}",
                        hint="train experts on the configured embedder.model or point router.experts_dir elsewhere",
                    )
                self._experts[n] = e
            self.backbone.load()
            if callable(self._bf16):  # the base embedder's decision, made once it is loaded
                self._bf16 = bool(self._bf16())
            self._names = names
            self._pilot_vecs, self._pilot_owner, self._pilot_count = pilots.matrix(names)
            self._member_vecs, self._member_owner = pilots.member_matrix(names)
            if self.routing == "head":
                self.head = self._load_head(names)
            self._ready = True

    def _load_head(self, names: list[str]) -> RoutingHead | None:
        try:
            head = RoutingHead.load(self.experts_dir)
        except NoExperts:
            log.warning("router.routing is 'head' but %s has no routing head: routing by pilots "
                        "(fit one with `openscholar router pilots`)", self.experts_dir)
            return None
        if head.base_model != self.model_id:
            raise ExpertMismatch(
                f"the routing head in {self.experts_dir} was fitted on {head.base_model}, the base encoder is {self.model_id}",
                hint="refit it with `openscholar router pilots`",
            )
        if not any(n in head.experts for n in names):
            raise ExpertMismatch(
                f"the routing head knows {head.experts}, none of the experts {names}",
                hint="refit it with `openscholar router pilots`",
            )
        return head

    @property
    def rule(self) -> str:
        """The rule that routes: "head" or "pilots" (pilots also where a head was asked for but is missing)."""
        self._load()
        return "head" if self.head is not None else "pilots"

    def _model(self, name: str) -> Any:
        if name not in self._models:
            with self._lock:
                if name not in self._models:
                    self._models[name] = self.backbone.merged_expert(self._experts[name].adapter_dir)
        return self._models[name]

    # -- facts ----------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.backbone.dim

    @property
    def expert_names(self) -> list[str]:
        self._load()
        return list(self._names)

    # -- routing and encoding -------------------------------------------------------------------
    def _forward(self, model: Any, batch: dict[str, Any]) -> np.ndarray:
        import torch

        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self._bf16 else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            return self.backbone.forward(model, batch).float().numpy()

    def similarities(self, base_vectors: np.ndarray) -> np.ndarray:
        """(n, experts) mean cosine of each query's base vector to each expert's pilots (weighted by
        the pilots' query counts under ``weighting="count"``; the largest one under "nearest")."""
        self._load()
        return pilot_similarities(base_vectors, self._pilot_vecs, self._pilot_owner, self._pilot_count,
                                  self._member_vecs, self._member_owner, len(self._names), self.weighting, self.knn)

    def encode_base(self, texts: Sequence[str]) -> np.ndarray:
        self._load()
        return np.concatenate([self._forward(self.backbone.model, self.backbone.tokenize(texts[i : i + self.batch_size]))
                               for i in range(0, len(texts), self.batch_size)]) if texts else np.zeros((0, self.dim), np.float32)

    def encode_with(self, name: str, texts: Sequence[str]) -> np.ndarray:
        """Queries encoded by one named expert (for oracles and single-expert baselines)."""
        self._load()
        model = self._model(name)
        return np.concatenate([self._forward(model, self.backbone.tokenize(texts[i : i + self.batch_size]))
                               for i in range(0, len(texts), self.batch_size)]) if texts else np.zeros((0, self.dim), np.float32)

    def _base_forward(self, batch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """Base vectors and, under the head, its early-layer features, from one forward pass."""
        if self.head is None:
            return self._forward(self.backbone.model, batch), None
        import torch

        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self._bf16 else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            base, early = self.backbone.forward_with_layer(self.backbone.model, batch, self.head.layer)
        return base.float().numpy(), early.float().numpy()

    def _scores(self, batch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(base vectors, pilot similarities, head probabilities or None) of one tokenized batch."""
        base, early = self._base_forward(batch)
        sims = self.similarities(base)
        probs = self.head.probabilities(early, self._names) if self.head is not None and early is not None else None
        return base, sims, probs

    def route(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(chosen expert per query, routing scores (n, experts): head probabilities under the
        head, else pilot similarities, base vectors)."""
        self._load()
        parts = [self._scores(self.backbone.tokenize(texts[i : i + self.batch_size])) for i in range(0, len(texts), self.batch_size)]
        if not parts:
            return [], np.zeros((0, len(self._names)), np.float32), np.zeros((0, self.dim), np.float32)
        base = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[2] if p[2] is not None else p[1] for p in parts])
        return [self._names[j] for j in scores.argmax(axis=1)], scores, base

    def encode_queries(self, texts: Sequence[str]) -> QueryVectors:
        texts = list(texts)
        self._load()
        if not texts:
            return QueryVectors(np.zeros((0, self.dim), np.float32), [])
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        routing: list[Routing | None] = [None] * len(texts)
        for s in range(0, len(texts), self.batch_size):
            chunk = texts[s : s + self.batch_size]
            batch = self.backbone.tokenize(chunk)  # one tokenization serves routing and encoding
            _, sims, probs = self._scores(batch)
            choice = (probs if probs is not None else sims).argmax(axis=1)
            for j in np.unique(choice):
                rows = np.flatnonzero(choice == j)
                sub = {key: v[rows] for key, v in batch.items()} if len(rows) < len(chunk) else batch
                if len(rows) < len(chunk):  # trim padding of the sub-batch
                    width = int(sub["attention_mask"].sum(1).max())
                    sub = {key: v[:, :width] for key, v in sub.items()}
                vectors[s + rows] = self._forward(self._model(self._names[j]), sub)
            for r in range(len(chunk)):
                routing[s + r] = Routing(
                    expert=self._names[int(choice[r])],
                    rule="head" if probs is not None else "pilots",
                    similarities={n: round(float(sims[r, i]), 6) for i, n in enumerate(self._names)},
                    head=None if probs is None else {n: round(float(probs[r, i]), 6) for i, n in enumerate(self._names)},
                )
        return QueryVectors(vectors, [r for r in routing if r is not None])
