"""The SQLite job store (embedded mode): jobs as JSON rows in one file that many local processes share.

Besides the JSON document, each job row carries the columns that queries need: ``status`` and
``queue_at`` (queue positions, the recovery of running jobs), the lease (owner, until) and
``dispatch_at`` (the outbox: NULL once handed to the broker). Worker heartbeats and statistics live
in two small tables. Conditional changes run inside ``BEGIN IMMEDIATE`` transactions.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from api.jobs import TERMINAL, Job, JobStore, bucket_of, progress_of, steps_from_flat, unavailable

_COLUMNS = {"status": "TEXT", "queue_at": "REAL", "dispatch_at": "REAL"}


class SQLiteJobStore(JobStore):
    """Jobs as JSON rows in one SQLite file (embedded mode; many processes on one machine)."""

    def __init__(self, path: Path, ttl_s: int, queue: str = "openscholar") -> None:
        self.ttl_s = ttl_s
        self.queue = queue
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
            "CREATE TABLE IF NOT EXISTS workers (name TEXT PRIMARY KEY, data TEXT NOT NULL, seen REAL NOT NULL)",
            "CREATE TABLE IF NOT EXISTS stats (key TEXT PRIMARY KEY, value REAL NOT NULL)",
        ):
            db.execute(ddl)
        have = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        for name, kind in _COLUMNS.items():  # job databases written before these columns existed
            if name not in have:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        db.execute("UPDATE jobs SET status = json_extract(data, '$.status'), "
                   "queue_at = json_extract(data, '$.created_at') WHERE status IS NULL")
        db.execute("CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, queue_at)")
        db.execute("CREATE INDEX IF NOT EXISTS jobs_dispatch ON jobs (dispatch_at)")

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

    def _k(self, name: str) -> str:
        return f"{self.queue}|{name}"

    @unavailable
    def ping(self) -> None:
        self._db().execute("SELECT 1").fetchone()

    @unavailable
    def create(self, jobs: list[Job], batch_id: str | None = None, owner: str = "",
               dispatch_in_s: float = 30.0) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE expires < ?", (now,))
            db.executemany(
                "INSERT OR REPLACE INTO jobs (id, data, expires, status, queue_at, dispatch_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(j.id, j.model_dump_json(), now + self.ttl_s, j.status, j.created_at, now + dispatch_in_s)
                 for j in jobs],
            )
            if batch_id is not None:
                data = {"id": batch_id, "owner": owner, "created_at": now, "total": len(jobs),
                        "job_ids": [j.id for j in jobs]}
                db.execute("INSERT OR REPLACE INTO batches VALUES (?, ?, ?)", (batch_id, json.dumps(data), now + self.ttl_s))

    @unavailable
    def get(self, job_id: str) -> Job | None:
        row = self._db().execute("SELECT data FROM jobs WHERE id = ? AND expires >= ?", (job_id, time.time())).fetchone()
        return Job.model_validate_json(row[0]) if row else None

    @unavailable
    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        found: dict[str, Job] = {}
        now = time.time()
        for i in range(0, len(job_ids), 500):
            chunk = job_ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for (data,) in self._db().execute(f"SELECT data FROM jobs WHERE id IN ({marks}) AND expires >= ?",
                                              (*chunk, now)):
                job = Job.model_validate_json(data)
                found[job.id] = job
        return [found.get(j) for j in job_ids]

    @staticmethod
    def _write(db: sqlite3.Connection, job_id: str, data: dict[str, Any], fields: dict[str, Any]) -> None:
        data.update(fields)
        if "status" in fields:
            queue_at = time.time() if fields["status"] == "queued" else None
            db.execute("UPDATE jobs SET data = ?, status = ?, queue_at = COALESCE(?, queue_at) WHERE id = ?",
                       (json.dumps(data), fields["status"], queue_at, job_id))
        else:
            db.execute("UPDATE jobs SET data = ? WHERE id = ?", (json.dumps(data), job_id))

    @unavailable
    def update(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        with self._tx() as db:
            row = db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None:
                self._write(db, job_id, json.loads(row[0]), fields)

    @unavailable
    def transition(self, job_id: str, from_states: Iterable[str], **fields: Any) -> bool:
        fields["updated_at"] = time.time()
        allowed = set(from_states)
        with self._tx() as db:
            row = db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return False
            data = json.loads(row[0])
            if data.get("status") not in allowed:
                return False
            self._write(db, job_id, data, fields)
            return True

    @unavailable
    def cancel(self, job_ids: list[str]) -> list[Job | None]:
        now = time.time()
        with self._tx() as db:
            for jid in job_ids:
                row = db.execute("SELECT data FROM jobs WHERE id = ?", (jid,)).fetchone()
                if row is None:
                    continue
                data = json.loads(row[0])
                if data.get("status") == "queued":
                    self._write(db, jid, data, {"status": "cancelled", "cancel_requested": True, "finished_at": now,
                                                "updated_at": now})
                elif data.get("status") == "running":
                    self._write(db, jid, data, {"cancel_requested": True, "updated_at": now})
        return self.get_many(job_ids)

    @unavailable
    def add_event(self, job_id: str, event: dict[str, Any]) -> int:
        with self._tx() as db:
            (n,) = db.execute("SELECT COUNT(*) FROM events WHERE job_id = ?", (job_id,)).fetchone()
            db.execute("INSERT INTO events VALUES (?, ?, ?)", (job_id, n, json.dumps(event)))
        self.update(job_id, events=n + 1, progress=progress_of(event, n + 1))
        return n + 1

    @unavailable
    def events(self, job_id: str, start: int = 0) -> list[dict[str, Any]]:
        rows = self._db().execute(
            "SELECT data FROM events WHERE job_id = ? AND seq >= ? ORDER BY seq", (job_id, start)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    @unavailable
    def batch(self, batch_id: str) -> dict[str, Any] | None:
        row = self._db().execute(
            "SELECT data FROM batches WHERE id = ? AND expires >= ?", (batch_id, time.time())
        ).fetchone()
        return json.loads(row[0]) if row else None

    # -- queue positions and the dispatch outbox ---------------------------------------------
    @unavailable
    def queue_position(self, job_id: str) -> int | None:
        row = self._db().execute("SELECT status, queue_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row[0] != "queued":
            return None
        (ahead,) = self._db().execute(
            "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND (queue_at < ? OR (queue_at = ? AND id < ?))",
            (row[1], row[1], job_id)).fetchone()
        return int(ahead) + 1

    @unavailable
    def queue_depth(self) -> int:
        (n,) = self._db().execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND expires >= ?",
                                  (time.time(),)).fetchone()
        return int(n)

    @unavailable
    def mark_dispatched(self, job_ids: list[str]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE jobs SET dispatch_at = NULL WHERE id = ?", [(j,) for j in job_ids])

    @unavailable
    def mark_undispatched(self, job_ids: list[str], due_in_s: float) -> None:
        with self._tx() as db:
            db.executemany("UPDATE jobs SET dispatch_at = ? WHERE id = ?", [(time.time() + due_in_s, j) for j in job_ids])

    @unavailable
    def take_undispatched(self, limit: int, retry_in_s: float) -> list[str]:
        now = time.time()
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE dispatch_at IS NOT NULL AND dispatch_at <= ? "
                                            "LIMIT ?", (now, limit))]
            db.executemany("UPDATE jobs SET dispatch_at = ? WHERE id = ?", [(now + retry_in_s, j) for j in ids])
        return ids

    # -- leases and recovery -----------------------------------------------------------------
    @unavailable
    def acquire_lease(self, job_id: str, owner: str, ttl_s: float) -> bool:
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET lease_owner = ?, lease_until = ? WHERE id = ? AND "
                "(lease_owner IS NULL OR lease_until < ?)",
                (owner, now + ttl_s, job_id, now),
            )
            return cur.rowcount == 1

    @unavailable
    def renew_lease(self, job_id: str, owner: str, ttl_s: float) -> bool:
        now = time.time()
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND lease_until >= ?",
                             (now + ttl_s, job_id, owner, now))
            return cur.rowcount == 1

    @unavailable
    def release_lease(self, job_id: str, owner: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
                       (job_id, owner))

    @unavailable
    def take_expired_leases(self, grace_s: float, limit: int = 100) -> list[str]:
        now = time.time()
        taken = []
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, data FROM jobs WHERE status = 'running' AND expires >= ? AND "
                "(lease_until IS NULL OR lease_until < ?) LIMIT ?", (now, now, limit)).fetchall()
            for jid, raw in rows:
                data = json.loads(raw)
                if float(data.get("updated_at") or 0) > now - grace_s:
                    continue
                self._write(db, jid, data, {"status": "queued", "updated_at": now})
                db.execute("UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE id = ?", (jid,))
                taken.append(jid)
        return taken

    # -- workers and statistics --------------------------------------------------------------
    @unavailable
    def heartbeat(self, worker: str, info: dict[str, Any]) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO workers VALUES (?, ?, ?)",
                       (self._k(worker), json.dumps({**info, "seen": now}), now))

    @unavailable
    def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        db = self._db()
        db.execute("DELETE FROM workers WHERE seen < ?", (now - 24 * 3600,))
        rows = db.execute("SELECT name, data, seen FROM workers WHERE name LIKE ? ORDER BY seen DESC",
                          (self._k("%"),)).fetchall()
        return [{**json.loads(data), "worker": name.split("|", 1)[1], "age_s": round(now - seen, 1)}
                for name, data, seen in rows]

    def _add(self, db: sqlite3.Connection, key: str, value: float) -> None:
        db.execute("INSERT INTO stats VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                   (self._k(key), value))

    @unavailable
    def record_outcome(self, status: str) -> None:
        with self._tx() as db:
            self._add(db, f"outcome|{status}", 1)

    @unavailable
    def observe_step(self, step: str, seconds: float) -> None:
        with self._tx() as db:
            self._add(db, f"step|{step}|{bucket_of(seconds)}", 1)
            self._add(db, f"step|{step}|sum", seconds)

    @unavailable
    def stats(self) -> dict[str, Any]:
        db = self._db()
        rows = db.execute("SELECT key, value FROM stats WHERE key LIKE ?", (self._k("%"),)).fetchall()
        outcomes: dict[str, int] = {}
        flat: dict[str, float] = {}
        for key, value in rows:
            kind, _, rest = key.split("|", 1)[1].partition("|")
            if kind == "outcome":
                outcomes[rest] = int(value)
            elif kind == "step":
                flat[rest] = float(value)
        now = time.time()
        counts = dict(db.execute("SELECT status, COUNT(*) FROM jobs WHERE status IN ('queued', 'running') "
                                 "AND expires >= ? GROUP BY status", (now,)).fetchall())
        return {"outcomes": outcomes, "steps": steps_from_flat(flat), "queued": int(counts.get("queued", 0)),
                "running": int(counts.get("running", 0))}

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


__all__ = ["TERMINAL", "SQLiteJobStore"]
