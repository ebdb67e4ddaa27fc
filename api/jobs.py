"""The job store: job state, step events and batches, shared by every API process and worker.

Two backends with one interface: Redis (production; the broker's server unless ``service.state_url``
says otherwise) and SQLite under ``cache_dir`` (embedded mode, no server). Every record expires
after ``service.job_ttl_s``. A running job holds a lease that its worker renews; a redelivered copy
of the job waits for the lease to lapse, so a job runs on one worker at a time and is taken over
when its worker dies. Lost connections raise ``ServiceUnavailable`` (503, retryable).
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field

from api.errors import ServiceUnavailable

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
STATES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")

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
    progress: dict[str, Any] = Field(default_factory=dict)
    events: int = 0
    cancel_requested: bool = False
    worker: str | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _unavailable(fn: F) -> F:
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

    def ping(self) -> None: ...
    def create(self, jobs: list[Job], batch_id: str | None = None, owner: str = "") -> None: ...
    def get(self, job_id: str) -> Job | None: ...
    def get_many(self, job_ids: list[str]) -> list[Job | None]: ...
    def update(self, job_id: str, **fields: Any) -> None: ...
    def add_event(self, job_id: str, event: dict[str, Any]) -> int: ...
    def events(self, job_id: str, start: int = 0) -> list[dict[str, Any]]: ...
    def batch(self, batch_id: str) -> dict[str, Any] | None: ...
    def acquire_lease(self, job_id: str, owner: str, ttl_s: float) -> bool: ...
    def renew_lease(self, job_id: str, owner: str, ttl_s: float) -> bool: ...
    def release_lease(self, job_id: str, owner: str) -> None: ...
    def close(self) -> None: ...


class RedisJobStore(JobStore):
    """Jobs as Redis hashes (one JSON value per field, so concurrent field writes never clobber)."""

    prefix = "openscholar:"

    def __init__(self, url: str, ttl_s: int) -> None:
        import redis

        self.ttl_s = ttl_s
        self._r = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10, retry_on_timeout=False
        )

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @_unavailable
    def ping(self) -> None:
        self._r.ping()

    @_unavailable
    def create(self, jobs: list[Job], batch_id: str | None = None, owner: str = "") -> None:
        pipe = self._r.pipeline(transaction=True)
        for job in jobs:
            key = self._k("job", job.id)
            pipe.hset(key, mapping={k: json.dumps(v) for k, v in job.model_dump(mode="json").items()})
            pipe.expire(key, self.ttl_s)
        if batch_id is not None:
            bkey = self._k("batch", batch_id)
            pipe.hset(bkey, mapping={"id": json.dumps(batch_id), "owner": json.dumps(owner),
                                     "created_at": json.dumps(time.time()), "total": json.dumps(len(jobs))})
            pipe.expire(bkey, self.ttl_s)
            lkey = self._k("batch", batch_id, "jobs")
            for i in range(0, len(jobs), 500):
                pipe.rpush(lkey, *[j.id for j in jobs[i : i + 500]])
            pipe.expire(lkey, self.ttl_s)
        pipe.execute()

    @staticmethod
    def _decode(raw: Any) -> Job | None:
        if not raw or b"id" not in raw:
            return None
        return Job.model_validate({k.decode(): json.loads(v) for k, v in raw.items()})

    @_unavailable
    def get(self, job_id: str) -> Job | None:
        return self._decode(self._r.hgetall(self._k("job", job_id)))

    @_unavailable
    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        out: list[Job | None] = []
        for i in range(0, len(job_ids), 200):
            pipe = self._r.pipeline(transaction=False)
            for jid in job_ids[i : i + 200]:
                pipe.hgetall(self._k("job", jid))
            out.extend(self._decode(raw) for raw in pipe.execute())
        return out

    @_unavailable
    def update(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        key = self._k("job", job_id)
        if not self._r.exists(key):
            return
        self._r.hset(key, mapping={k: json.dumps(v) for k, v in fields.items()})

    @_unavailable
    def add_event(self, job_id: str, event: dict[str, Any]) -> int:
        key = self._k("job", job_id, "events")
        pipe = self._r.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(event))
        pipe.expire(key, self.ttl_s)
        n = int(pipe.execute()[0])
        self.update(job_id, events=n, progress=_progress(event, n))
        return n

    @_unavailable
    def events(self, job_id: str, start: int = 0) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self._r.lrange(self._k("job", job_id, "events"), start, -1)]

    @_unavailable
    def batch(self, batch_id: str) -> dict[str, Any] | None:
        raw: Any = self._r.hgetall(self._k("batch", batch_id))
        if not raw:
            return None
        info = {k.decode(): json.loads(v) for k, v in raw.items()}
        ids: Any = self._r.lrange(self._k("batch", batch_id, "jobs"), 0, -1)
        info["job_ids"] = [j.decode() for j in ids]
        return info

    @_unavailable
    def acquire_lease(self, job_id: str, owner: str, ttl_s: float) -> bool:
        return bool(self._r.set(self._k("lease", job_id), owner, nx=True, px=int(ttl_s * 1000)))

    @_unavailable
    def renew_lease(self, job_id: str, owner: str, ttl_s: float) -> bool:
        key = self._k("lease", job_id)
        if self._r.get(key) != owner.encode():
            return False
        return bool(self._r.pexpire(key, int(ttl_s * 1000)))

    @_unavailable
    def release_lease(self, job_id: str, owner: str) -> None:
        key = self._k("lease", job_id)
        if self._r.get(key) == owner.encode():
            self._r.delete(key)

    def close(self) -> None:
        self._r.close()


class SQLiteJobStore(JobStore):
    """Jobs as JSON rows in one SQLite file (embedded mode; many processes on one machine)."""

    def __init__(self, path: Path, ttl_s: int) -> None:
        self.ttl_s = ttl_s
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        db = self._db()
        for ddl in (
            "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, data TEXT NOT NULL, expires REAL NOT NULL, "
            "lease_owner TEXT, lease_until REAL)",
            "CREATE TABLE IF NOT EXISTS events (job_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, "
            "PRIMARY KEY (job_id, seq))",
            "CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, data TEXT NOT NULL, expires REAL NOT NULL)",
        ):
            db.execute(ddl)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type: Any, *_: object) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> SQLiteJobStore._Tx:
        return self._Tx(self._db())

    @_unavailable
    def ping(self) -> None:
        self._db().execute("SELECT 1").fetchone()

    @_unavailable
    def create(self, jobs: list[Job], batch_id: str | None = None, owner: str = "") -> None:
        now = time.time()
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE expires < ?", (now,))
            db.executemany(
                "INSERT OR REPLACE INTO jobs (id, data, expires) VALUES (?, ?, ?)",
                [(j.id, j.model_dump_json(), now + self.ttl_s) for j in jobs],
            )
            if batch_id is not None:
                data = {"id": batch_id, "owner": owner, "created_at": now, "total": len(jobs),
                        "job_ids": [j.id for j in jobs]}
                db.execute("INSERT OR REPLACE INTO batches VALUES (?, ?, ?)", (batch_id, json.dumps(data), now + self.ttl_s))

    @_unavailable
    def get(self, job_id: str) -> Job | None:
        row = self._db().execute("SELECT data FROM jobs WHERE id = ? AND expires >= ?", (job_id, time.time())).fetchone()
        return Job.model_validate_json(row[0]) if row else None

    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        return [self.get(j) for j in job_ids]

    @_unavailable
    def update(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        with self._tx() as db:
            row = db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return
            data = json.loads(row[0])
            data.update(fields)
            db.execute("UPDATE jobs SET data = ? WHERE id = ?", (json.dumps(data), job_id))

    @_unavailable
    def add_event(self, job_id: str, event: dict[str, Any]) -> int:
        with self._tx() as db:
            (n,) = db.execute("SELECT COUNT(*) FROM events WHERE job_id = ?", (job_id,)).fetchone()
            db.execute("INSERT INTO events VALUES (?, ?, ?)", (job_id, n, json.dumps(event)))
        self.update(job_id, events=n + 1, progress=_progress(event, n + 1))
        return n + 1

    @_unavailable
    def events(self, job_id: str, start: int = 0) -> list[dict[str, Any]]:
        rows = self._db().execute(
            "SELECT data FROM events WHERE job_id = ? AND seq >= ? ORDER BY seq", (job_id, start)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    @_unavailable
    def batch(self, batch_id: str) -> dict[str, Any] | None:
        row = self._db().execute(
            "SELECT data FROM batches WHERE id = ? AND expires >= ?", (batch_id, time.time())
        ).fetchone()
        return json.loads(row[0]) if row else None

    @_unavailable
    def acquire_lease(self, job_id: str, owner: str, ttl_s: float) -> bool:
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET lease_owner = ?, lease_until = ? WHERE id = ? AND "
                "(lease_owner IS NULL OR lease_until < ?)",
                (owner, now + ttl_s, job_id, now),
            )
            return cur.rowcount == 1

    @_unavailable
    def renew_lease(self, job_id: str, owner: str, ttl_s: float) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ?", (time.time() + ttl_s, job_id, owner)
            )
            return cur.rowcount == 1

    @_unavailable
    def release_lease(self, job_id: str, owner: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
                       (job_id, owner))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _progress(event: dict[str, Any], n: int) -> dict[str, Any]:
    return {"step": event.get("step"), "status": event.get("status"), "events": n,
            "elapsed_ms": event.get("elapsed_ms")}
