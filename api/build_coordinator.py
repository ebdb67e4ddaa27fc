"""The coordinator of a distributed datastore build: plan, hand parts to Celery workers, finalize.

``openscholar datastore build SOURCES --out DIR --workers celery`` runs `CeleryDatastoreBuilder`:
the local build (``plan_parts`` -> ``build_part`` per part -> ``finalize``, under the directory's
write lock) with the middle step done by workers that take ``service.build_queue`` (``openscholar
worker --queues build``) and write their parts to storage the coordinator sees at the same path.
Parts already finished in DIR (an earlier, interrupted run) are not sent again.

The coordinator waits on each part's Celery result. A part whose worker stopped reporting progress
(killed, machine gone) for ``service.build_stall_s``, or whose task failed with a lost worker or a
time limit, is sent again under a new attempt id (Redis redelivers the lost message too; the part
lock in api/build_tasks.py keeps two copies from building at once, and a finished part is returned
as is). Any attempt's success finishes the part. ``finalize`` then runs here: ids, the global index,
the manifest. Same plan, same encoder, same hardware class => the same files as a local build.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from api import build_tasks
from api.celery_app import configure, is_embedded
from datastore.builder import (
    BuildReport,
    DatastoreBuilder,
    PartPlan,
    PassageEncoder,
    build_part,
    encoder_info,
)
from datastore.config import DatastoreConfig
from datastore.errors import DatastoreError, EncoderMismatch, ScholarError
from datastore.manifest import PartInfo
from datastore.parts import PART_JSON, parts_dir, remove_partials
from openscholar.settings import Settings

log = logging.getLogger(__name__)

POLL_S = 0.5
MAX_ATTEMPTS = 5
# A task that failed for one of these lost its worker (or ran out of time): the part is sent again.
RESEND_ON = ("WorkerLostError", "TimeLimitExceeded", "SoftTimeLimitExceeded", "Terminated")


@dataclass
class PartRun:
    """One part in flight: its attempts (task ids), what the last progress report said, and when."""

    name: str
    plan: dict[str, Any]
    attempts: list[str] = field(default_factory=list)
    last_meta: dict[str, Any] = field(default_factory=dict)
    last_change: float = 0.0
    seen_running: bool = False
    result: dict[str, Any] | None = None


@dataclass
class WorkerStats:
    """What one worker process did in this build: parts it built, passages it embedded, its seconds on
    them (``load_s`` of it loading the embedder, once per process)."""

    parts: int = 0
    passages: int = 0
    seconds: float = 0.0
    load_s: float = 0.0
    device: str = ""


@dataclass
class DispatchStats:
    """The Celery side of a build: parts sent, sent again (lost workers), and who built what."""

    parts_sent: int = 0
    resent: int = 0
    seconds: float = 0.0
    workers: dict[str, WorkerStats] = field(default_factory=dict)


class CeleryDatastoreBuilder(DatastoreBuilder):
    """The local build (plan -> build_part -> finalize) with each part built by a Celery worker.

    ``encoder`` only describes the embedder here (id, dim, max_tokens for the manifest; load it on
    the CPU): the workers embed, each with ``settings.embedder`` on its own device, and must report
    the same encoder. ``on_sent(part, task_id)`` is told of every task sent (tests use it).
    """

    def __init__(self, encoder: PassageEncoder, config: DatastoreConfig, settings: Settings, *,
                 progress: bool = True, timeout_s: float | None = None,
                 on_sent: Callable[[str, str], None] | None = None) -> None:
        super().__init__(encoder, config, progress=progress)
        if is_embedded(settings):
            raise DatastoreError(
                "--workers celery needs a broker that worker processes and machines share",
                hint="set service.broker_url (OPENSCHOLAR_SERVICE__BROKER_URL=redis://HOST:6379/0) for the build "
                "and its workers, or build in this process with --workers local",
            )
        self.settings = settings
        self.timeout_s = timeout_s
        self.on_sent = on_sent
        self.stats = DispatchStats()

    def _build_parts(self, root: Path, plans: list[PartPlan], report: BuildReport) -> list[PartInfo]:
        """Send every unfinished part to the build queue, wait for all (sending lost ones again), and
        return their infos in plan order. Runs under the datastore's write lock, like the local build."""
        svc = self.settings.service
        configure(self.settings)
        root = Path(root).resolve()
        infos: dict[str, PartInfo] = {}
        runs: dict[str, PartRun] = {}
        for plan in plans:
            final = parts_dir(root) / plan.name
            if (final / PART_JSON).is_file():
                infos[plan.name] = build_part(root, plan, self.encoder, self.config)  # checks, returns as is
            else:
                runs[plan.name] = PartRun(plan.name, json.loads(plan.model_dump_json()))
        report.parts_reused += len(infos)
        embedder = json.loads(self.settings.embedder.model_dump_json())
        datastore = json.loads(self.config.model_dump_json())
        build_key = uuid.uuid4().hex[:12]
        if runs:
            _warn_if_no_workers(svc.build_queue)

        def send(run: PartRun) -> None:
            if len(run.attempts) >= MAX_ATTEMPTS:
                raise DatastoreError(
                    f"part {run.name} was sent {MAX_ATTEMPTS} times and never finished",
                    hint="see the build workers' logs (a part that kills its worker every time: memory, a bad "
                    "record); rerun the same build to resume",
                )
            task_id = f"build-{build_key}-{run.name}-a{len(run.attempts)}"
            run.attempts.append(task_id)
            run.last_meta, run.seen_running, run.last_change = {}, False, time.monotonic()
            build_tasks.send_part(run.plan, str(root), embedder, datastore, task_id=task_id,
                                  queue=svc.build_queue, time_limit_s=svc.build_part_time_limit_s)
            self.stats.parts_sent += 1
            if self.on_sent is not None:
                self.on_sent(run.name, task_id)

        t0 = time.monotonic()
        for run in runs.values():
            send(run)
        bar = tqdm(total=len(plans), initial=len(infos), desc=f"parts ({root.name}, celery)", unit="part",
                   disable=not self.progress)
        try:
            while any(r.result is None for r in runs.values()):
                now = time.monotonic()
                self._check_timeout(runs, now - t0)
                for run in runs.values():
                    if run.result is not None:
                        continue
                    if _poll(run, now, svc.build_stall_s):
                        self.stats.resent += 1
                        log.warning("part %s: its worker was lost (no progress for %.0f s, or a lost-worker "
                                    "failure); sending it again", run.name, svc.build_stall_s)
                        send(run)
                    if run.result is not None:
                        bar.update(1)
                busy = {r.last_meta.get("worker") for r in runs.values() if r.result is None and r.seen_running}
                flight = sum(int(r.last_meta.get("passages", 0)) for r in runs.values() if r.result is None)
                bar.set_postfix(workers_busy=len(busy), passages_in_flight=flight, resent=self.stats.resent,
                                refresh=False)
                time.sleep(POLL_S)
        finally:
            bar.close()
        self.stats.seconds = time.monotonic() - t0
        mine = encoder_info(self.encoder).model_dump()
        for run in runs.values():
            res = run.result or {}
            theirs = res.get("encoder")
            if theirs != mine:
                raise EncoderMismatch(
                    f"worker {res.get('worker')} built part {run.name} with encoder {res.get('encoder')}, but this "
                    f"build records {mine}",
                    hint="run the build workers with the same model files and settings (embedder.*) as the "
                    "command that starts the build; delete that part and rerun",
                )
            infos[run.name] = PartInfo.model_validate(res["part"])
            if not res.get("reused"):
                w = self.stats.workers.setdefault(res["worker"], WorkerStats(device=res.get("device", "")))
                w.parts += 1
                w.passages += int(res.get("embedded", 0))
                w.seconds += float(res.get("seconds", 0.0))
                w.load_s += float(res.get("load_s", 0.0))
            for task_id in run.attempts:
                build_tasks.build_part_task.AsyncResult(task_id).forget()
        report.parts_written += len(runs)
        shutil.rmtree(root / build_tasks.LOCKS, ignore_errors=True)
        remove_partials(root)  # of workers killed mid-part; every part is finished now
        return [infos[p.name] for p in plans]

    def _check_timeout(self, runs: dict[str, PartRun], elapsed: float) -> None:
        if self.timeout_s is None or elapsed <= self.timeout_s:
            return
        left = sorted(r.name for r in runs.values() if r.result is None)
        raise DatastoreError(
            f"the build's parts did not finish within {self.timeout_s:g} s ({len(left)} left: {left[:5]})",
            hint="start more workers (`openscholar worker --queues build`) and rerun the same build: finished "
            "parts are kept", retryable=True)


def _poll(run: PartRun, now: float, stall_s: float) -> bool:
    """Read the attempts' states; sets ``run.result`` when one finished. True when the part must be sent
    again (its worker was lost: stalled progress, or a lost-worker/time-limit failure)."""
    resend = False
    for i, task_id in enumerate(run.attempts):
        res = build_tasks.build_part_task.AsyncResult(task_id)
        state, info = res.state, res.info
        latest = i == len(run.attempts) - 1
        if state == "SUCCESS":
            if isinstance(info, dict) and "error" in info:
                if latest and info["error"].get("retryable"):  # e.g. storage briefly away: another try
                    log.warning("part %s: retryable error on its worker: %s", run.name, info["error"].get("message"))
                    return True
                if latest:
                    raise _as_error(info["error"], run.name, str(info.get("worker", "?")))
                continue
            run.result = info
            return False
        if state == "FAILURE":
            name = type(info).__name__ if isinstance(info, BaseException) else str(info)
            if latest and any(n in name for n in RESEND_ON):
                resend = True
            elif latest:
                raise DatastoreError(f"part {run.name} failed on its worker: {name}: {info}",
                                     hint="see the build worker's log; fix the cause and rerun the same build "
                                     "(finished parts are kept)")
        if latest and state in ("STARTED", "PROGRESS") and isinstance(info, dict):
            # STARTED: a worker took it (loading its model); PROGRESS: its heartbeats (beat counts up)
            if not run.seen_running or info != run.last_meta:
                run.last_meta, run.last_change = dict(info), now
            run.seen_running = True
    if run.seen_running and now - run.last_change > stall_s:
        resend = True
    return resend


def _as_error(error: dict[str, Any], part: str, worker: str) -> ScholarError:
    """A worker's ``ScholarError`` (returned as a dict) raised again here, with the part and worker named."""
    return DatastoreError(f"part {part} (worker {worker}): {error.get('message', error)}",
                          hint=str(error.get("hint", "")), retryable=bool(error.get("retryable", False)))


def _warn_if_no_workers(queue: str) -> None:
    """Say so when no worker takes the build queue yet (the build waits for one; it does not fail)."""
    try:
        replies = build_tasks.celery.control.inspect(timeout=2.0).active_queues() or {}
    except Exception as exc:  # noqa: BLE001 - the broker answers the sends below or fails them clearly
        log.warning("could not ask the workers which queues they take: %s", exc)
        return
    if not any(q.get("name") == queue for qs in replies.values() for q in qs):
        log.warning("no worker takes the build queue %r yet; the parts wait for one: start "
                    "`openscholar worker --queues build` on each machine", queue)
