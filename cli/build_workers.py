"""How `openscholar datastore build|add` gets its builder: in this process, or by Celery workers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from cli.common import err
from datastore.builder import BuildReport, DatastoreBuilder, plan_parts
from datastore.config import DatastoreConfig
from openscholar.components import build_embedder
from openscholar.settings import Settings

Workers = Literal["local", "celery"]


def parts_for(sources: Sequence[str], config: DatastoreConfig, parts: int) -> int:
    """``part_papers`` that cuts ``sources`` into about ``parts`` parts (ceil(papers / parts)), by one scan of
    the sources; a local and a Celery build given the same ``--parts`` plan the same parts."""
    whole = config.model_copy(update={"part_papers": 1 << 62})
    papers = sum(p.lines or 1 for p in plan_parts(list(sources), whole))
    return max(1, math.ceil(papers / max(1, parts)))


def make_builder(s: Settings, config: DatastoreConfig, workers: str, *, progress: bool,
                 timeout_s: float | None = None) -> DatastoreBuilder:
    """The local builder (embeds here, on embedder.device), or the Celery one: this process plans,
    waits and finalizes; workers that take service.build_queue embed, each on its own device."""
    if workers == "local":
        return DatastoreBuilder(build_embedder(s), config, progress=progress)
    if workers != "celery":
        import typer

        raise typer.BadParameter(f"unknown --workers {workers!r}: use local or celery", param_hint="--workers")
    from api.build_coordinator import CeleryDatastoreBuilder

    # Here the embedder only describes itself for the manifest (id, dim, token budget): the CPU will do.
    describe = s.model_copy(update={"embedder": s.embedder.model_copy(update={"device": "cpu"})})
    return CeleryDatastoreBuilder(build_embedder(describe), config, s, progress=progress, timeout_s=timeout_s)


def report_workers(builder: DatastoreBuilder, report: BuildReport) -> None:
    """After a Celery build: who built what, how fast, on which device (the build log's record)."""
    stats = getattr(builder, "stats", None)
    if stats is None:
        enc = getattr(builder.encoder, "device", None)
        if enc:
            err.print(f"  embedded in this process on {enc}", highlight=False)
        return
    err.print(f"  celery: {stats.parts_sent} part tasks sent ({stats.resent} sent again after a lost worker), "
              f"parts done in {stats.seconds:.1f}s", highlight=False)
    for name, w in sorted(stats.workers.items()):
        busy = w.seconds - w.load_s
        rate = w.passages / busy if busy > 0 else 0.0
        err.print(f"  worker {name} on {w.device}: {w.parts} parts, {w.passages} passages, {rate:.1f} passages/s "
                  f"(model load {w.load_s:.1f}s not counted)", highlight=False)
