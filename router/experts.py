"""Experts on disk: one directory per expert with its LoRA adapter, manifest and pilot set.

```
<experts_dir>/
  pilots.json                # the router's pilot embeddings (see router.pilots)
  <name>/
    manifest.json            # ExpertManifest: domain, data hash, training recipe, metrics, seed
    adapter/                 # peft LoRA adapter (adapter_config.json + adapter_model.safetensors)
    pilot_set.jsonl          # the training queries (with their positives) that pilots are built from
```
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from datastore.manifest import atomic_write_text
from datastore.strict import StrictModel
from retriever.training.loop import LoopRecord
from router.errors import ExpertNotFound, NoExperts, RouterError

MANIFEST = "manifest.json"
ADAPTER = "adapter"
PILOT_SET = "pilot_set.jsonl"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Pair:
    """A training query and one passage that answers it (title + text as the encoder sees it)."""

    query: str
    positive: str


def read_pairs(path: Path) -> list[Pair]:
    """Pairs from JSONL lines ``{"query": ..., "positive": ...}`` (or ``"positives": [...]``)."""
    pairs: list[Pair] = []
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                positives = row["positives"] if "positives" in row else [row["positive"]]
                q = str(row["query"]).strip()
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise RouterError(
                    f"{path}:{n} is not a training pair ({exc})",
                    hint='each line must be {"query": "...", "positive": "..."} or {"query": ..., "positives": [...]}',
                ) from exc
            pairs += [Pair(q, str(p).strip()) for p in positives if q and str(p).strip()]
    if not pairs:
        raise RouterError(f"{path} holds no training pairs", hint="build pairs with scripts/make_expert_pairs.py")
    return pairs


def write_pairs(path: Path, pairs: Iterable[Pair]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for p in pairs:
            fh.write(json.dumps({"query": p.query, "positive": p.positive}, ensure_ascii=False) + "\n")
            n += 1
    return n


def save_versioned_json(path: Path, data: dict[str, Any]) -> Path:
    """Write a router file (pilots, routing head) atomically: readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return path


def load_versioned_json(path: Path, version: int, *, missing: str, hint: str) -> dict[str, Any]:
    """A router file written by `save_versioned_json`: NoExperts (with ``missing``/``hint``) when it
    is absent, RouterError when its ``format_version`` is not ``version``."""
    if not path.is_file():
        raise NoExperts(f"{missing} at {path}", hint=hint)
    data = json.loads(path.read_text())
    if data.get("format_version") != version:
        raise RouterError(f"{path} has format version {data.get('format_version')}", hint=hint)
    return data


def pairs_hash(pairs: Sequence[Pair]) -> str:
    """sha256 over the pairs in order: names the training data in the manifest."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(p.query.encode())
        h.update(b"\x1f")
        h.update(p.positive.encode())
        h.update(b"\x1e")
    return h.hexdigest()


class TrainingRecord(StrictModel):
    """How an expert was trained: enough to retrain it and to audit it."""

    data_hash: str = Field(description="sha256 of the training pairs (router.experts.pairs_hash).")
    data_source: str = Field("", description="Where the pairs came from (file name or builder).")
    pairs: int = Field(description="Training pairs used.")
    queries: int = Field(description="Distinct training queries.")
    steps: int
    epochs: float
    batch_size: int
    learning_rate: float
    temperature: float
    corpus_negatives: int = Field(0, description="Frozen corpus vectors used as extra negatives.")
    negatives_source: str = Field("", description="Datastore build id the negatives came from.")
    seed: int
    train_seconds: float = Field(description="Wall-clock seconds of the optimizer loop (the CPU is shared: see cpu seconds).")
    train_cpu_seconds: float = Field(0.0, description="CPU seconds the training process used in the loop.")
    final_loss: float
    pilot_held_out: bool = Field(False, description="The pilot queries were held out of training (router.pilot_holdout).")
    loop: LoopRecord | None = Field(
        None, description="The shared training loop's record (schedule, stop reason, loss curve); None in manifests "
        "written before the loop was shared (the packaged experts).")


class ExpertManifest(StrictModel):
    """What an expert is, what it was trained on and how well it did."""

    format_version: int = FORMAT_VERSION
    name: str
    domain: str = Field(description="The domain in words, e.g. 'biomedical claims (SciFact train)'.")
    base_model: str = Field(description="Base encoder id the adapter sits on (must equal the datastore's).")
    dim: int
    lora_rank: int
    lora_alpha: int
    lora_targets: list[str]
    training: TrainingRecord
    pilot_set_hash: str = Field(description="sha256 of pilot_set.jsonl.")
    pilot_queries: int
    metrics: dict[str, float] = Field(default_factory=dict, description="e.g. nDCG@10 on its pilot set, base vs expert.")
    created_at: str = ""


@dataclass(frozen=True, slots=True)
class Expert:
    name: str
    root: Path
    manifest: ExpertManifest

    @property
    def adapter_dir(self) -> Path:
        return self.root / ADAPTER

    def pilot_set(self) -> list[Pair]:
        """The pilot queries, checked against the manifest's hash (pilots are rebuilt from them)."""
        path = self.root / PILOT_SET
        if file_hash(path) != self.manifest.pilot_set_hash:
            raise RouterError(
                f"{path} does not match the hash in {self.root / MANIFEST}",
                hint="restore the expert's pilot set or retrain the expert",
            )
        return read_pairs(path)


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class ExpertStore:
    """The experts directory: list, read, add (from a trained dir) and remove experts."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / MANIFEST).is_file())

    def get(self, name: str) -> Expert:
        d = self.root / name
        if not (d / MANIFEST).is_file():
            raise ExpertNotFound(
                f"no expert {name!r} in {self.root}",
                hint=f"known experts: {', '.join(self.names()) or '(none)'}; train one with `openscholar router train-expert`",
            )
        manifest = ExpertManifest.model_validate_json((d / MANIFEST).read_text())
        return Expert(name, d, manifest)

    def experts(self, names: Sequence[str] | None = None) -> list[Expert]:
        return [self.get(n) for n in (names if names is not None else self.names())]

    def save_manifest(self, name: str, manifest: ExpertManifest) -> None:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / (MANIFEST + ".tmp")
        tmp.write_text(manifest.model_dump_json(indent=2) + "\n")
        tmp.replace(d / MANIFEST)

    def import_dir(self, src: Path, name: str | None = None) -> Expert:
        """Copy a trained expert directory (manifest + adapter + pilot set) into the store."""
        src = Path(src).expanduser()
        if not (src / MANIFEST).is_file() or not (src / ADAPTER).is_dir():
            raise RouterError(f"{src} is not an expert directory", hint=f"it needs {MANIFEST} and {ADAPTER}/")
        manifest = ExpertManifest.model_validate_json((src / MANIFEST).read_text())
        name = name or manifest.name
        dst = self.root / name
        if dst.exists():
            raise RouterError(f"expert {name!r} already exists in {self.root}", hint="remove it first or pick another name")
        shutil.copytree(src, dst)
        if name != manifest.name:
            self.save_manifest(name, manifest.model_copy(update={"name": name}))
        return self.get(name)

    def remove(self, name: str) -> None:
        expert = self.get(name)
        shutil.rmtree(expert.root)


def manifest_summary(m: ExpertManifest) -> dict[str, Any]:
    return {
        "name": m.name,
        "domain": m.domain,
        "pairs": m.training.pairs,
        "queries": m.training.queries,
        "train_seconds": round(m.training.train_seconds, 1),
        "seed": m.training.seed,
        "data_hash": m.training.data_hash[:12],
        **{k: round(v, 4) for k, v in m.metrics.items()},
    }
