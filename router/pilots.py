"""Pilot embeddings (RouterRetriever, arXiv 2409.02685, Algorithm 1) and the pilots file.

For each domain (an expert's training queries, sampled into its pilot set): score every expert on
every query by nDCG@k of the query's gold passages against the frozen candidate pool, assign each
query to the expert that ranks its gold best, and keep, per assigned expert, the centroid of the
group's BASE-encoder query embeddings. An expert's pilots are the centroids assigned to it (one per
domain that has queries it serves best). Queries no expert retrieves anything for (all nDCG 0)
carry no signal and are left out; ties go to the domain's own expert, then to the first name.

Each pilot entry records its ``source`` domain. Adding expert X computes only the entries with
source X (``add_expert_pilots``); removing X drops the entries with source X or expert X
(``remove_expert_pilots``); all other entries stay byte-identical. ``compute_pilots`` recomputes the
whole table from the manifests' pilot sets, deterministically.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from router.backbone import Backbone
from router.errors import NoExperts
from router.experts import Expert, load_versioned_json, save_versioned_json
from router.pool import CandidatePool, PairSet, embed_positives, ndcg_at_k

log = logging.getLogger(__name__)

PILOTS_FILE = "pilots.json"
PILOTS_VERSION = 1


@dataclass
class PilotEntry:
    source: str  # domain whose training queries formed the group
    expert: str  # expert that served them best
    count: int  # queries in the group
    vector: np.ndarray  # centroid of the group's base query embeddings
    members: np.ndarray | None = None  # the group's base query embeddings themselves (count, dim)

    def to_dict(self) -> dict:
        d = {"source": self.source, "expert": self.expert, "count": self.count,
             "vector": [float(x) for x in self.vector]}
        if self.members is not None:  # fp16, base64: the finest pilots cost ~0.8 KB per query
            d["members_f16"] = base64.b64encode(np.asarray(self.members, dtype="<f2").tobytes()).decode("ascii")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PilotEntry:
        vector = np.asarray(d["vector"], dtype=np.float32)
        members = None
        if d.get("members_f16"):
            raw = np.frombuffer(base64.b64decode(d["members_f16"]), dtype="<f2")
            members = raw.astype(np.float32).reshape(-1, len(vector))
        return cls(d["source"], d["expert"], int(d["count"]), vector, members)


@dataclass
class Pilots:
    """The router's pilot table: entries plus what they were computed from."""

    base_model: str
    k: int
    negatives_source: str
    entries: list[PilotEntry] = field(default_factory=list)
    expert_hashes: dict[str, str] = field(default_factory=dict)  # expert -> pilot_set_hash at compute time

    @property
    def experts(self) -> list[str]:
        return sorted({e.expert for e in self.entries})

    def of(self, expert: str) -> list[PilotEntry]:
        return [e for e in self.entries if e.expert == expert]

    def member_matrix(self, experts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Normalized base vectors of every pilot query (the finest pilots) and each one's expert index."""
        rows = [(experts.index(e.expert), e.members) for e in self.entries
                if e.expert in experts and e.members is not None and len(e.members)]
        if not rows:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
        vecs = np.concatenate([m for _, m in rows]).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True).clip(min=1e-12)
        return vecs, np.concatenate([np.full(len(m), i, np.int64) for i, m in rows])

    def matrix(self, experts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalized pilot vectors, each one's expert index (into ``experts``) and query count."""
        rows = [(experts.index(e.expert), e.vector, e.count) for e in self.entries if e.expert in experts]
        if not rows:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32)
        vecs = np.stack([v for _, v, _ in rows]).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True).clip(min=1e-12)
        return vecs, np.array([i for i, _, _ in rows], dtype=np.int64), np.array([c for _, _, c in rows], dtype=np.float32)

    def save(self, root: Path) -> Path:
        data = {
            "format_version": PILOTS_VERSION,
            "base_model": self.base_model,
            "k": self.k,
            "negatives_source": self.negatives_source,
            "expert_hashes": dict(sorted(self.expert_hashes.items())),
            "entries": [e.to_dict() for e in sorted(self.entries, key=lambda e: (e.source, e.expert))],
        }
        return save_versioned_json(root / PILOTS_FILE, data)

    @classmethod
    def load(cls, root: Path) -> Pilots:
        d = load_versioned_json(Path(root) / PILOTS_FILE, PILOTS_VERSION, missing="no pilot embeddings",
                                hint="compute them with `openscholar router pilots` (after training experts)")
        return cls(d["base_model"], int(d["k"]), d.get("negatives_source", ""),
                   [PilotEntry.from_dict(e) for e in d["entries"]], dict(d.get("expert_hashes", {})))


class ExpertEncoders:
    """Merged base+adapter models, loaded once per expert, sharing one tokenizer."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone
        self._models: dict[str, object] = {}

    def model(self, expert: Expert) -> object:
        key = str(expert.root)
        if key not in self._models:
            self._models[key] = self.backbone.merged_expert(expert.adapter_dir)
        return self._models[key]

    def encode(self, expert: Expert, texts: Sequence[str]) -> np.ndarray:
        return self.backbone.encode_with(self.model(expert), texts)


def domain_scores(
    backbone: Backbone,
    domain: Expert,
    experts: Sequence[Expert],
    corpus: np.ndarray | None,
    lookup: dict[str, int] | None,
    k: int,
    encoders: ExpertEncoders | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The domain's pilot queries: (base vectors (n, dim), per-query nDCG@k of each expert (n, experts))."""
    encoders = encoders or ExpertEncoders(backbone)
    ps = PairSet.from_pairs(domain.pilot_set())
    pos = embed_positives(ps.positives, lookup, corpus, backbone.encode)
    pool = CandidatePool.build(pos, corpus)
    gold = [[int(pool.pos_row[p]) for p in g] for g in ps.gold]
    base = backbone.encode(ps.queries)
    scores = np.stack([ndcg_at_k(encoders.encode(e, ps.queries), gold, pool.vectors, k) for e in experts], axis=1)
    return base, scores


def domain_entries(
    backbone: Backbone,
    domain: Expert,
    experts: Sequence[Expert],
    corpus: np.ndarray | None,
    lookup: dict[str, int] | None,
    k: int,
    encoders: ExpertEncoders | None = None,
) -> list[PilotEntry]:
    """Algorithm 1 for one domain: its pilot queries grouped by best expert -> centroids."""
    base, scores = domain_scores(backbone, domain, experts, corpus, lookup, k, encoders)
    return group_entries(domain.name, [e.name for e in experts], base, scores)


def group_entries(domain: str, names: Sequence[str], base: np.ndarray, scores: np.ndarray) -> list[PilotEntry]:
    """Group a domain's pilot queries by the expert that ranks their gold best (ties: the domain's
    own expert, then the first name; queries no expert retrieves are dropped) -> one entry per group."""
    entries = []
    best = scores.max(axis=1)
    assigned: dict[int, list[int]] = {}
    for qi in range(len(base)):
        if best[qi] <= 0:
            continue
        tied = [j for j in range(len(names)) if scores[qi, j] >= best[qi] - 1e-12]
        own = names.index(domain) if domain in names else -1
        j = own if own in tied else tied[0]
        assigned.setdefault(j, []).append(qi)
    for j, qis in sorted(assigned.items()):
        entries.append(PilotEntry(domain, names[j], len(qis), base[qis].mean(axis=0).astype(np.float32),
                                  base[qis].astype(np.float32)))
    log.info("pilots of %s: %s", domain, {names[j]: len(q) for j, q in sorted(assigned.items())})
    return entries


def compute_pilots(
    backbone: Backbone,
    experts: Sequence[Expert],
    corpus: np.ndarray | None = None,
    lookup: dict[str, int] | None = None,
    *,
    k: int = 10,
    negatives_source: str = "",
) -> Pilots:
    """The full pilot table over ``experts`` (each expert's pilot set is one domain)."""
    if not experts:
        raise NoExperts("no experts to compute pilots for", hint="train one with `openscholar router train-expert`")
    experts = sorted(experts, key=lambda e: e.name)
    encoders = ExpertEncoders(backbone)
    entries: list[PilotEntry] = []
    for d in experts:
        entries += domain_entries(backbone, d, experts, corpus, lookup, k, encoders)
    return Pilots(backbone.model_name, k, negatives_source, entries,
                  {e.name: e.manifest.pilot_set_hash for e in experts})


def add_expert_pilots(
    pilots: Pilots,
    backbone: Backbone,
    new: Expert,
    experts: Sequence[Expert],
    corpus: np.ndarray | None = None,
    lookup: dict[str, int] | None = None,
) -> Pilots:
    """Pilots after adding ``new``: only entries whose source is ``new`` are (re)computed."""
    everyone = sorted({e.name: e for e in [*experts, new]}.values(), key=lambda e: e.name)
    fresh = domain_entries(backbone, new, everyone, corpus, lookup, pilots.k)
    kept = [e for e in pilots.entries if e.source != new.name]
    hashes = {**pilots.expert_hashes, new.name: new.manifest.pilot_set_hash}
    return Pilots(pilots.base_model, pilots.k, pilots.negatives_source, kept + fresh, hashes)


def remove_expert_pilots(pilots: Pilots, name: str) -> Pilots:
    """Pilots after removing ``name``: its own entries (as source or as expert) are dropped."""
    kept = [e for e in pilots.entries if e.source != name and e.expert != name]
    hashes = {k: v for k, v in pilots.expert_hashes.items() if k != name}
    return Pilots(pilots.base_model, pilots.k, pilots.negatives_source, kept, hashes)
