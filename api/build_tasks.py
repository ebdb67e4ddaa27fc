"""The worker's side of a distributed datastore build: build one part of a plan.

``openscholar datastore build --workers celery`` (api/build_coordinator.py) plans the build's parts
and sends one ``openscholar.build_part`` task per part to ``service.build_queue``. A worker
(``openscholar worker --queues build``) loads the embedder once per process, on its own
``embedder.device`` (a GPU where it has one), and runs datastore's ``build_part``, which writes
``parts/<name>.partial-*`` on the shared storage and renames it into place.

What keeps a part right when workers die or messages come twice:

- acks_late + reject_on_worker_lost: the message of a killed worker goes back to the queue (Redis
  restores an unacked message after ``service.visibility_timeout_s``; a killed pool process's is
  requeued at once), and the coordinator sends a part again when its worker stops reporting.
- one builder per part at a time: an exclusive ``flock`` on ``<root>/.build-locks/<name>.lock``,
  which the kernel releases when its process dies. A second copy of a part whose builder is alive
  retries later; a part already finished is returned as it is (``build_part`` is idempotent and
  redoes an unfinished ``.partial``).
- progress: a thread stores the task's state as PROGRESS (passages embedded, a beat counter, the
  worker and its device) every ``service.build_heartbeat_s``; the coordinator shows it and takes a
  part whose beat stopped for ``service.build_stall_s`` as lost.

Nothing that differs between workers (host, pid, device, times) goes into the part's files: the
finished datastore is the same whichever worker built which part.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Self

import numpy as np
from celery.signals import worker_process_init, worker_ready

from api import celery_app as rt
from api.celery_app import celery
from datastore.errors import DatastoreError, ScholarError
from retriever.config import EmbedderConfig
from retriever.st_embedder import SentenceTransformerEmbedder

log = logging.getLogger(__name__)

BUILD_TASK = "openscholar.build_part"
LOCKS = ".build-locks"
LOCK_RETRY_S = 10.0
# Settings of the worker's own machine, never the coordinator's: where it runs, with how many threads.
WORKER_LOCAL = ("device", "threads")

_encoder: tuple[str, SentenceTransformerEmbedder] | None = None
_encoder_lock = threading.Lock()


def worker_embedder(config: dict[str, Any]) -> SentenceTransformerEmbedder:
    """This process's embedder for the build's embedder settings, on this worker's device.

    Loaded once per process and kept while parts of builds with the same settings arrive (the
    model is the expensive part: seconds on CPU, more to move to a GPU).
    """
    global _encoder
    local = rt.settings().embedder
    cfg = EmbedderConfig.model_validate({**config, **{k: getattr(local, k) for k in WORKER_LOCAL}})
    key = cfg.model_dump_json()
    with _encoder_lock:
        if _encoder is None or _encoder[0] != key:
            start = time.perf_counter()
            encoder = SentenceTransformerEmbedder(cfg).warm_up()
            log.warning("build worker %d: embedder %s on %s, loaded in %.1f s", os.getpid(), cfg.model,
                        encoder.device, time.perf_counter() - start)
            _encoder = (key, encoder)
        return _encoder[1]


def _warm(pool: str) -> None:
    """Load the embedder of this worker's own settings before the first part arrives (a build with
    the same embedder settings then finds it loaded); a failure here is logged and retried per part."""
    if "build" not in rt.roles():
        return
    try:
        worker_embedder(json.loads(rt.settings().embedder.model_dump_json()))
    except Exception:
        log.exception("build worker (%s pool): loading the embedder failed; each part will try again", pool)


@worker_process_init.connect
def _warm_pool_process(**_: Any) -> None:
    """Prefork: each pool process loads its own embedder (never the parent's, before fork)."""
    _warm("prefork")


@worker_ready.connect
def _warm_main_process(sender: Any = None, **_: Any) -> None:
    """Solo and thread pools build parts in the main process: load the embedder before `ready.`."""
    pool = getattr(sender, "pool", None)
    if pool is not None and type(pool).__module__ != "celery.concurrency.prefork":
        _warm(type(pool).__module__.rsplit(".", 1)[-1])


class _CountingEncoder:
    """The worker's embedder, counting the passages it embeds (the part's progress)."""

    def __init__(self, encoder: SentenceTransformerEmbedder) -> None:
        self._encoder = encoder
        self.embedded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = self._encoder.embed(texts)
        self.embedded += len(texts)
        return out

    def __getattr__(self, name: str) -> Any:  # model_id, dim, max_tokens, count_tokens, config, ...
        return getattr(self._encoder, name)


class _Heartbeat:
    """Stores the task's PROGRESS state every ``interval`` seconds from the moment the worker takes the part
    (loading a model can take longer than the coordinator's patience) until it is built."""

    def __init__(self, task: Any, task_id: str, part: str, interval: float) -> None:
        self.task, self.task_id, self.part, self.interval = task, task_id, part, interval
        self.encoder: _CountingEncoder | None = None  # set once the embedder is loaded
        self.beat = 0
        self.info: dict[str, Any] = {"worker": worker_id(), "part": part}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"beat-{part}")

    def attach(self, encoder: _CountingEncoder) -> None:
        self.encoder = encoder
        self.info["device"] = encoder.device

    def send(self) -> None:
        self.beat += 1
        try:
            self.task.update_state(task_id=self.task_id, state="PROGRESS",
                                   meta={**self.info, "beat": self.beat,
                                         "passages": self.encoder.embedded if self.encoder else 0})
        except Exception as exc:  # noqa: BLE001 - Redis blip: the next beat may get through
            log.warning("part %s: could not report progress: %s", self.part, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.send()

    def __enter__(self) -> Self:
        self.send()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)  # no beat may land after the task's result (Celery keeps a SUCCESS anyway)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def part_lock(root: Path, name: str) -> Iterator[bool]:
    """Hold the part's build lock while the block runs; yields False (and holds nothing) when a live
    process holds it. A dead process's lock is free: the kernel drops flocks with their process."""
    directory = root / LOCKS
    directory.mkdir(parents=True, exist_ok=True)
    fh: IO[str] = (directory / f"{name}.lock").open("a")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()


@celery.task(bind=True, name=BUILD_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=False,
             track_started=True, max_retries=None)
def build_part_task(self: Any, plan: dict[str, Any], root: str, embedder: dict[str, Any],
                    datastore: dict[str, Any]) -> dict[str, Any]:
    """Build part ``plan`` of the datastore at ``root`` (shared storage) with the build's embedder and
    datastore settings; returns the part's info, the encoder's summary and who built it how fast.

    A ``ScholarError`` (a source that cannot be read, a bad setting) is returned as
    ``{"error": ...}``: the coordinator stops the build with its message and hint.
    """
    from datastore.builder import PartPlan, build_part, encoder_info
    from datastore.config import DatastoreConfig
    from datastore.parts import PART_JSON, parts_dir, remove_partials

    task_id = self.request.id
    start = time.perf_counter()
    try:
        part = PartPlan.model_validate(plan)
        path = Path(root)
        if not path.is_dir():
            raise DatastoreError(
                f"the datastore directory {path} is not visible on worker {worker_id()}",
                hint="build onto storage every worker mounts at the same path (NFS, a shared disk), and pass "
                "that path as --out",
            )
        config = DatastoreConfig.model_validate(datastore)
        with _Heartbeat(self, task_id, part.name, rt.settings().service.build_heartbeat_s) as beat:
            loading = time.perf_counter()
            encoder = _CountingEncoder(worker_embedder(embedder))
            load_s = time.perf_counter() - loading
            beat.attach(encoder)
            summary = json.loads(encoder_info(encoder).model_dump_json())
            done_before = (parts_dir(path) / part.name / PART_JSON).is_file()
            if done_before:  # a second copy of a finished part: nothing to lock, nothing to redo
                info = build_part(path, part, encoder, config)  # type: ignore[arg-type]
            else:
                with part_lock(path, part.name) as mine:
                    if not mine:
                        log.info("part %s is being built by another live worker; looking again in %.0f s",
                                 part.name, LOCK_RETRY_S)
                        raise self.retry(countdown=LOCK_RETRY_S, max_retries=None)
                    # This process holds the part: what a killed builder of it left is garbage now.
                    remove_partials(path, part.name)
                    info = build_part(path, part, encoder, config)  # type: ignore[arg-type]
    except ScholarError as exc:
        log.warning("part %s failed: %s", plan.get("name"), exc)
        return {"error": exc.to_dict(), "worker": worker_id()}
    seconds = time.perf_counter() - start
    log.warning("part %s: %d passages (%d embedded here) in %.1f s on %s", info.name, info.count, encoder.embedded,
                seconds, encoder.device)
    return {
        "part": json.loads(info.model_dump_json()),
        "encoder": summary,
        "worker": worker_id(),
        "device": encoder.device,
        "embedded": encoder.embedded,
        "reused": done_before,
        "seconds": round(seconds, 3),
        "load_s": round(load_s, 3),
    }


def send_part(plan: dict[str, Any], root: str, embedder: dict[str, Any], datastore: dict[str, Any], *,
              task_id: str, queue: str, time_limit_s: float) -> None:
    """Queue one part on the build queue (``task_id`` names the build, the part and the attempt)."""
    build_part_task.apply_async(
        args=[plan, root, embedder, datastore], task_id=task_id, queue=queue,
        time_limit=time_limit_s, soft_time_limit=max(1.0, time_limit_s - 60),
    )
