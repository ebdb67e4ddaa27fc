"""The Celery app: Redis broker and result store in production, an embedded SQLite transport otherwise.

``configure(settings)`` is called once per process (API or ``openscholar worker``) before any task is
sent or run. Tasks are acknowledged late and requeued when their worker dies; prefetch is one job
per process so an idle worker is never starved by a busy one. Each worker process builds its
``Engine`` once, when it starts (``worker_process_init``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from api.jobs import JobStore, RedisJobStore, SQLiteJobStore
from openscholar.settings import Settings

log = logging.getLogger(__name__)

celery = Celery("openscholar", include=["api.tasks"])
PROC_START_TIMEOUT_S = 600.0  # how long a pool process may take to load its models (see configure)

_settings: Settings | None = None
_store: JobStore | None = None
_engine: Any = None
# What this process's worker serves: "answer" (questions: the Engine is warmed per process) and/or
# "build" (datastore parts: api/build_tasks.py loads the embedder on its first part).
_roles: frozenset[str] = frozenset({"answer"})


def set_roles(roles: set[str] | frozenset[str]) -> None:
    """Tell the worker process hooks what this worker serves (`openscholar worker --queues`)."""
    global _roles
    _roles = frozenset(roles)


def roles() -> frozenset[str]:
    """What this process's worker serves: "answer" and/or "build"."""
    return _roles


def embedded_dir(settings: Settings) -> Path:
    path = settings.cache_path / "service"
    path.mkdir(parents=True, exist_ok=True)
    return path


def broker_url(settings: Settings) -> str:
    if settings.service.broker_url:
        return settings.service.broker_url
    return f"sqla+sqlite:///{embedded_dir(settings) / 'broker.sqlite'}"


def result_backend(settings: Settings) -> str:
    if settings.service.result_backend:
        return settings.service.result_backend
    if settings.service.broker_url and settings.service.broker_url.startswith(("redis://", "rediss://")):
        return settings.service.broker_url
    return f"db+sqlite:///{embedded_dir(settings) / 'results.sqlite'}"


def is_embedded(settings: Settings) -> bool:
    return not settings.service.broker_url


def build_store(settings: Settings) -> JobStore:
    """The job store: ``state_url`` or the Redis broker, else SQLite under cache_dir."""
    svc = settings.service
    url = svc.state_url or svc.broker_url or ""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisJobStore(url, svc.job_ttl_s, queue=svc.queue)
    return SQLiteJobStore(embedded_dir(settings) / "jobs.sqlite", svc.job_ttl_s, queue=svc.queue)


def _wal_for_embedded_broker(path: Path) -> None:
    """WAL journal for the embedded SQLite broker: a publish is then a commit without an fsync (it
    was ~37 ms each with the default journal), and still survives a crash of any process."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    target = str(path.resolve())
    if target in _wal_paths:
        return
    _wal_paths.add(target)

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        if not hasattr(dbapi_conn, "execute"):
            return
        try:
            files = {str(Path(row[2]).resolve()) for row in dbapi_conn.execute("PRAGMA database_list") if row[2]}
        except Exception:  # noqa: BLE001 - not an sqlite3 connection
            return
        if target in files:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")


_wal_paths: set[str] = set()


def time_limits(settings: Settings) -> tuple[float, float]:
    """The job's (soft, hard) time limits. The answer loop's own budget (``answer.budgets``: the total,
    then verification) runs out first and returns a partial, checked answer; the soft limit only
    catches a loop that overran it, so it is kept at least a minute above that budget."""
    svc, budgets = settings.service, settings.answer.budgets
    soft = max(svc.soft_time_limit_s, budgets.total_s + budgets.verify_s + 60)
    return soft, max(svc.hard_time_limit_s, soft + 60)


def configure(settings: Settings) -> Celery:
    """Point the Celery app and the job store at what ``settings`` name (idempotent)."""
    global _settings, _store, _engine
    svc = settings.service
    broker = broker_url(settings)
    if _settings is not None and broker_url(_settings) != broker:
        # Connection and producer pools are cached per app: drop those of the old broker, or messages
        # would still go there (several deployments in one process: tests, benchmarks).
        celery.close()
        celery._pool = None
        celery.amqp._producer_pool = None
    transport_options: dict[str, Any] = {}
    if is_embedded(settings):
        from sqlalchemy.pool import NullPool

        _wal_for_embedded_broker(embedded_dir(settings) / "broker.sqlite")
        # kombu keeps a session per channel and a channel per pooled connection; a pooled SQLAlchemy
        # engine (15 connections) ran dry under a batch hand-over. SQLite connections are cheap: no pool.
        transport_options = {"poolclass": NullPool}
    if broker.startswith(("redis://", "rediss://")):
        transport_options = {
            "visibility_timeout": svc.visibility_timeout_s,
            "unacked_restore_interval": max(1, min(10, int(svc.visibility_timeout_s / 4))),
            "unacked_restore_throttle": 1,
            "socket_timeout": 10,
            "socket_connect_timeout": 3,
            "health_check_interval": 10,
        }
    celery.conf.update(
        broker_url=broker,
        result_backend=result_backend(settings),
        broker_transport_options=transport_options,
        result_backend_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_ignore_result=True,  # results live in the job store; nothing reads Celery's copy
        task_soft_time_limit=time_limits(settings)[0],
        task_time_limit=time_limits(settings)[1],
        result_expires=svc.job_ttl_s,
        worker_prefetch_multiplier=1,
        # A pool process loads its models (the Engine, or a build worker's embedder) in worker_process_init,
        # before it reports up. Celery kills a *replacement* process that is not up within 4 s (its default),
        # and starts another that is killed the same way: a worker whose pool process died never recovered.
        worker_proc_alive_timeout=PROC_START_TIMEOUT_S,
        worker_concurrency=svc.worker_concurrency,
        worker_hijack_root_logger=False,
        task_default_queue=svc.queue,
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1},
        broker_pool_limit=32,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    _settings, _store, _engine = settings, build_store(settings), None
    return celery


def settings() -> Settings:
    if _settings is None:
        from openscholar.settings import load_settings

        configure(load_settings())
    assert _settings is not None
    return _settings


def store() -> JobStore:
    if _store is None:
        settings()
    assert _store is not None
    return _store


def engine() -> Any:
    """This process's Engine (built on first use; workers build it at process start)."""
    global _engine
    if _engine is None:
        from openscholar.engine import Engine

        _engine = Engine.from_settings(settings())
    return _engine


@worker_process_init.connect
def _warm_worker(**_: Any) -> None:
    """Each worker process: fresh connections (never share a forked socket), models loaded once,
    then heartbeats: /readyz counts a worker only once it can take a job."""
    global _store
    if _settings is not None:
        _store = build_store(_settings)
    if "answer" not in _roles:  # a build-only worker: no Engine to warm, and /readyz must not count it
        return
    start = time.perf_counter()
    try:
        engine().warm_up()
        log.warning("worker process %d: engine warm in %.1f s", os.getpid(), time.perf_counter() - start)
    except Exception:
        log.exception("warming up the engine failed; jobs will retry loading it")
    _start_heartbeat("prefork")


@worker_ready.connect
def _worker_ready(sender: Any = None, **_: Any) -> None:
    """Solo and thread pools run jobs in the main process, which then sends the heartbeats."""
    pool = getattr(sender, "pool", None)
    if "answer" not in _roles:
        return
    if pool is not None and type(pool).__module__ != "celery.concurrency.prefork":
        _start_heartbeat(type(pool).__module__.rsplit(".", 1)[-1])


def _start_heartbeat(pool: str) -> None:
    """A daemon thread that tells the job store this process is alive, every worker_heartbeat_s."""
    svc = settings().service
    name = f"{socket.gethostname()}:{os.getpid()}"
    info = {"host": socket.gethostname(), "pid": os.getpid(), "queue": svc.queue, "pool": pool,
            "started": time.time()}

    def beat() -> None:
        while True:
            try:
                store().heartbeat(name, info)
            except Exception as exc:  # noqa: BLE001 - the store is down: /readyz will say so
                log.warning("heartbeat failed: %s", exc)
            time.sleep(svc.worker_heartbeat_s)

    threading.Thread(target=beat, daemon=True, name="heartbeat").start()
