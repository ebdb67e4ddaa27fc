"""Router fixtures: experts made on the real base (identity or deliberately broken LoRA), no training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from router.backbone import LORA_TARGETS, Backbone
from router.experts import (
    ADAPTER,
    PILOT_SET,
    ExpertManifest,
    ExpertStore,
    Pair,
    TrainingRecord,
    file_hash,
    pairs_hash,
    write_pairs,
)


def make_expert(store: ExpertStore, backbone: Backbone, name: str, pairs: list[Pair], *, noise: float = 0.0, seed: int = 0):
    """An expert whose LoRA is the identity (peft's B=0 init) or, with ``noise``, a random one
    large enough to wreck the query side (a planted bad expert)."""
    import torch

    model = backbone.lora_model(8, 32, seed=seed)
    if noise:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "lora_B" in pname:
                    p.copy_(torch.randn(p.shape, generator=gen) * noise)
    root = store.root / name
    root.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(root / ADAPTER))
    write_pairs(root / PILOT_SET, pairs)
    manifest = ExpertManifest(
        name=name, domain=f"test domain {name}", base_model=backbone.model_name, dim=backbone.dim,
        lora_rank=8, lora_alpha=32, lora_targets=list(LORA_TARGETS),
        training=TrainingRecord(data_hash=pairs_hash(pairs), pairs=len(pairs), queries=len({p.query for p in pairs}),
                                steps=0, epochs=0.0, batch_size=1, learning_rate=0.0, temperature=0.05, seed=seed,
                                train_seconds=0.0, final_loss=0.0),
        pilot_set_hash=file_hash(root / PILOT_SET), pilot_queries=len({p.query for p in pairs}),
    )
    store.save_manifest(name, manifest)
    return store.get(name)


@pytest.fixture(scope="session")
def backbone(embedder) -> Backbone:
    """The base as the router sees it, sharing the session embedder's weights."""
    return Backbone(embedder.model_id, st_model=embedder._load()).load()


@pytest.fixture(scope="session")
def corpus(small_datastore: Path):
    from datastore.datastore import Datastore
    from router.training import CorpusNegatives

    return CorpusNegatives.from_datastore(Datastore.open(small_datastore))


@pytest.fixture(scope="session")
def domains(scifact_subset: dict, small_datastore: Path, shared_data: Path) -> dict[str, dict[str, list[Pair]]]:
    """Two real domains, each split into pilot pairs and held-out pairs:
    claims (SciFact train claims -> gold passages in the small datastore) and cs (ScholarQA-CS
    questions and rubric criteria -> evidence snippets, not in the datastore)."""
    from datastore.datastore import Datastore

    ds = Datastore.open(small_datastore)
    texts: dict[str, list[str]] = {}
    for p in ds.iter_passages():
        texts.setdefault(p.paper_id, []).append(p.embed_text)
    claims = [Pair(scifact_subset["claims"][q], t) for q in sorted(scifact_subset["qrels"])
              for d in scifact_subset["qrels"][q] for t in texts.get(d, [])[:1]]
    cs_data = json.loads((shared_data / "scholarqabench" / "scholarqa_cs" / "test_configs_snippets_dev.json").read_text())
    cs = []
    for r in cs_data:
        for item in r["metric_config"]["config"].get("other_properties", [])[:2]:
            ev = [e for e in item.get("evidence") or [] if len(e.split()) >= 8]
            if ev:
                cs.append(Pair(item["criterion"].strip(), ev[0].strip()))
    def split(pairs: list[Pair], n: int) -> dict[str, list[Pair]]:
        qs = list(dict.fromkeys(p.query for p in pairs))
        keep = set(qs[:n])
        return {"pilot": [p for p in pairs if p.query in keep], "held_out": [p for p in pairs if p.query not in keep]}
    return {"claims": split(claims, 30), "cs": split(cs, 30)}


@pytest.fixture
def planted(tmp_path: Path, backbone: Backbone, domains) -> ExpertStore:
    """claims and cs: identity experts with their own domains' pilot sets; broken: a wrecked
    query side whose pilot set is claims too (so only Algorithm 1, not the domain label, can
    keep it from getting pilots)."""
    store = ExpertStore(tmp_path / "experts")
    make_expert(store, backbone, "claims", domains["claims"]["pilot"])
    make_expert(store, backbone, "cs", domains["cs"]["pilot"])
    make_expert(store, backbone, "broken", domains["claims"]["pilot"], noise=0.5, seed=1)
    return store


def pilots_table(p) -> dict[tuple[str, str], tuple[int, np.ndarray]]:
    return {(e.source, e.expert): (e.count, e.vector) for e in p.entries}
