"""The job store: job state, step events, batches, leases, worker heartbeats and job statistics.

Shared by every API process and worker. Two backends with one interface: Redis (production; the
broker's server unless ``service.state_url`` says otherwise; ``api/store_redis.py``) and SQLite under
``cache_dir`` (embedded mode, no server; ``api/store_sqlite.py``). Every job record expires after
``service.job_ttl_s``.

What keeps every job (DESIGN: a job is never lost):
- a running job holds a lease that its worker renews; a redelivered copy waits for the lease to lapse,
  so a job runs on one worker at a time, and a job whose lease lapsed is taken back by the API's
  recovery loop (``take_expired_leases``) and queued again, or failed after ``max_retries`` losses;
- jobs are written here first (one transaction for a whole batch) and handed to the broker after
  (the outbox: ``take_undispatched`` finds jobs an API process stored but never handed over);
- state changes that race (cancel vs start vs finish) are conditional (``transition``, ``cancel``).

Names that several deployments could share in one Redis database (worker heartbeats, statistics,
queue positions) are kept per queue. Lost connections raise ``ServiceUnavailable`` (503, retryable).
"""

from __future__ import annotations

import functools
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field

from api.errors import ServiceUnavailable

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
STATES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
# Upper bounds (seconds) of the per-step duration histogram buckets kept in the store.
STEP_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

F = TypeVar("F", bound=Callable[..., Any])


class Job(BaseModel):
    """One question's job as stored (the API shows it through ``JobOut``)."""

    id: str
    status: JobStatus = "queued"
    question: str
    options: dict[str, Any] = Field(default_factory=dict)
    owner: str = ""
    batch_id: str | None = None
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    retries: int = 0
    lost: int = Field(0, description="Times the job's worker died (or went silent) while running it.")
    progress: dict[str, Any] = Field(default_factory=dict)
    events: int = 0
    cancel_requested: bool = False
    worker: str | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def unavailable(fn: F) -> F:
    """Turn a lost Redis/SQLite connection into ServiceUnavailable (503)."""
    import redis.exceptions

    lost = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError,
            sqlite3.OperationalError)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except lost as exc:
            raise ServiceUnavailable(
                f"the job store cannot be reached ({type(exc).__name__})",
                hint="Redis (or the embedded job database) is down or restarting; retry in a few seconds",
            ) from exc

    return wrapper  # type: ignore[return-value]


class JobStore(Protocol):
    """Interface of both backends."""

    ttl_s: int
    queue: str

    def ping(self) -> None: ...
    def create(self, jobs: list[Job], batch_id: str | None = None, owner: str = "",
               dispatch_in_s: float = 30.0) -> None: ...
    def get(self, job_id: str) -> Job | None: ...
    def get_many(self, job_ids: list[str]) -> list[Job | None]: ...
    def update(self, job_id: str, **fields: Any) -> None: ...
    def transition(self, job_id: str, from_states: Iterable[str], **fields: Any) -> bool: ...
    def cancel(self, job_ids: list[str]) -> list[Job | None]: ...
    def add_event(self, job_id: str, event: dict[str, Any]) -> int: ...
    def events(self, job_id: str, start: int = 0) -> list[dict[str, Any]]: ...
    def batch(self, batch_id: str) -> dict[str, Any] | None: ...
    def queue_position(self, job_id: str) -> int | None: ...
    def queue_depth(self) -> int: ...
    def mark_dispatched(self, job_ids: list[str]) -> None: ...
    def mark_undispatched(self, job_ids: list[str], due_in_s: float) -> None: ...
    def take_undispatched(self, limit: int, retry_in_s: float) -> list[str]: ...
    def acquire_lease(self, job_id: str, owner: str, ttl_s: float) -> bool: ...
    def renew_lease(self, job_id: str, owner: str, ttl_s: float) -> bool: ...
    def release_lease(self, job_id: str, owner: str) -> None: ...
    def take_expired_leases(self, grace_s: float, limit: int = 100) -> list[str]: ...
    def heartbeat(self, worker: str, info: dict[str, Any]) -> None: ...
    def workers(self) -> list[dict[str, Any]]: ...
    def record_outcome(self, status: str) -> None: ...
    def observe_step(self, step: str, seconds: float) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def progress_of(event: dict[str, Any], n: int) -> dict[str, Any]:
    return {"step": event.get("step"), "status": event.get("status"), "events": n,
            "elapsed_ms": event.get("elapsed_ms")}


def bucket_of(seconds: float) -> str:
    """The histogram bucket (its upper bound, as a label) that ``seconds`` falls in."""
    for le in STEP_BUCKETS:
        if seconds <= le:
            return f"{le:g}"
    return "+Inf"


def steps_from_flat(flat: dict[str, float]) -> dict[str, dict[str, Any]]:
    """{"step|le": n, "step|sum": s} -> {step: {"buckets": {le: n}, "sum": s, "count": n}}."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        step, _, le = key.rpartition("|")
        entry = out.setdefault(step, {"buckets": {}, "sum": 0.0, "count": 0})
        if le == "sum":
            entry["sum"] = value
        else:
            entry["buckets"][le] = int(value)
            entry["count"] += int(value)
    return out


# The two backends (imported last: they build on the names above).
from api.store_redis import RedisJobStore
from api.store_sqlite import SQLiteJobStore

__all__ = ["STATES", "STEP_BUCKETS", "TERMINAL", "Job", "JobStatus", "JobStore", "RedisJobStore", "SQLiteJobStore",
           "bucket_of", "new_id", "progress_of", "steps_from_flat", "unavailable"]
