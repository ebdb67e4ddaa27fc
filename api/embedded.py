"""`serve`'s embedded worker: one supervised `openscholar worker` process, and its SQLite broker's upkeep.

Embedded mode gives the same guarantees as Redis mode:
- the worker is supervised: when it dies (killed, crashed), `serve` logs why and starts it again
  with backoff (1, 2, 4 ... s, at most ``service.embedded_restart_max_s``; reset once it ran a minute);
- kombu's SQLite transport hides a message when a worker takes it and never shows it again, even
  if that worker dies before finishing it. Before each (re)start, while no worker runs, the messages
  of unfinished jobs are made visible again (redelivered) and those of finished jobs are deleted;
  while the worker runs, finished jobs' messages are deleted every minute (the table stays small);
- one `serve` per cache directory runs the embedded worker (a lock file says which), so no other
  worker can hold a message that a restart makes visible again.
Jobs that were running are taken back by the API's recovery loop once their lease lapses.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

from api.errors import ApiError
from api.jobs import TERMINAL, JobStore

log = logging.getLogger(__name__)

CLEANUP_EVERY_S = 60.0
STABLE_AFTER_S = 60.0


def _job_id(payload: str) -> str | None:
    try:
        return str(json.loads(payload)["headers"]["id"])
    except (ValueError, KeyError, TypeError):
        return None


def broker_upkeep(broker: Path, queue: str, store: JobStore, *, restore: bool) -> dict[str, int]:
    """Delete hidden messages of finished (or expired) jobs; with ``restore``, show again those of
    unfinished jobs. ``restore`` is only safe while no worker consumes from this broker."""
    counts = {"restored": 0, "deleted": 0}
    if not broker.is_file():
        return counts
    db = sqlite3.connect(broker, timeout=30, isolation_level=None)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"kombu_message", "kombu_queue"} <= tables:
            return counts
        rows = db.execute("SELECT m.id, m.payload FROM kombu_message m JOIN kombu_queue q ON m.queue_id = q.id "
                          "WHERE q.name = ? AND m.visible = 0", (queue,)).fetchall()
        if not rows:
            return counts
        by_job: dict[str, list[int]] = {}
        orphans: list[int] = []
        for mid, payload in rows:
            jid = _job_id(payload)
            if jid is None:
                orphans.append(mid)
            else:
                by_job.setdefault(jid, []).append(mid)
        jobs = dict(zip(by_job, store.get_many(list(by_job)), strict=True))
        delete, show = list(orphans), []
        for jid, mids in by_job.items():
            job = jobs[jid]
            if job is None or job.status in TERMINAL:
                delete.extend(mids)
            elif restore:
                show.append(max(mids))  # the latest message of the job; older copies go
                delete.extend(m for m in mids if m != max(mids))
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM kombu_message WHERE id = ?", [(m,) for m in delete])
        db.executemany("UPDATE kombu_message SET visible = 1 WHERE id = ?", [(m,) for m in show])
        db.execute("COMMIT")
        counts = {"restored": len(show), "deleted": len(delete)}
    finally:
        db.close()
    return counts


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class EmbeddedWorker:
    """Starts `cmd` (an `openscholar worker`), restarts it with backoff when it dies, stops it on request."""

    def __init__(self, cmd: list[str], *, service_dir: Path, queue: str, store: JobStore,
                 max_backoff_s: float = 60.0, stop_s: float = 10.0) -> None:
        self.cmd, self.service_dir, self.queue, self.store = cmd, service_dir, queue, store
        self.broker = service_dir / "broker.sqlite"
        self.max_backoff_s, self.stop_s = max_backoff_s, stop_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock_file: IO[str] | None = None
        self._monitor: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> EmbeddedWorker:
        self._take_lock()
        self._spawn(first=True)
        self._monitor = threading.Thread(target=self._watch, daemon=True, name="embedded-worker")
        self._monitor.start()
        return self

    def _take_lock(self) -> None:
        self.service_dir.mkdir(parents=True, exist_ok=True)
        fh = (self.service_dir / "embedded-worker.lock").open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise ApiError(
                f"another `openscholar serve` already runs the embedded worker for {self.service_dir}",
                hint="stop it, use another cache_dir, or start this one with --no-embedded-worker",
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_file = fh

    def _spawn(self, first: bool = False) -> None:
        try:
            counts = broker_upkeep(self.broker, self.queue, self.store, restore=True)
            if counts["restored"]:
                log.warning("embedded worker: %d unfinished job(s) the previous worker held are queued again",
                            counts["restored"])
        except Exception as exc:  # noqa: BLE001 - the recovery loop still redelivers running jobs
            log.warning("embedded worker: could not restore in-flight jobs: %s", exc)
        # Its own process group: only `serve` decides when the worker stops (a Ctrl-C to serve's group
        # does not also hit Celery's pool processes), and `serve` can SIGKILL the worker with its pool.
        self.proc = subprocess.Popen(self.cmd, process_group=0)
        self._started = time.monotonic()
        if not first:
            log.warning("embedded worker restarted (pid %d, restart %d)", self.proc.pid, self.restarts)

    def _watch(self) -> None:
        backoff = 1.0
        last_cleanup = time.monotonic()
        while not self._stopping.is_set():
            assert self.proc is not None
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                if time.monotonic() - last_cleanup > CLEANUP_EVERY_S:
                    last_cleanup = time.monotonic()
                    try:
                        broker_upkeep(self.broker, self.queue, self.store, restore=False)
                    except Exception as exc:  # noqa: BLE001
                        log.debug("broker upkeep skipped: %s", exc)
                continue
            if self._stopping.is_set():
                return
            ran = time.monotonic() - self._started
            if ran > STABLE_AFTER_S:
                backoff = 1.0
            self.restarts += 1
            log.warning("embedded worker (pid %d) %s after %.0f s; restarting it in %.0f s",
                        self.proc.pid, _describe(code), ran, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self.max_backoff_s)
            self._spawn()  # its pool processes died with it (parent-death signal)

    def stop(self) -> None:
        """SIGTERM (Celery's warm shutdown: the running job gets stop_s), then SIGKILL to the whole group."""
        self._stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()  # the main process only: its warm shutdown stops the pool processes itself
            try:
                # The worker kills itself stop_s after a shutdown starts; the margin covers its start-up.
                proc.wait(self.stop_s + 5)
            except subprocess.TimeoutExpired:
                self._kill_group()
            except BaseException:  # a second Ctrl-C or SIGTERM while waiting: kill, go on exiting
                self._kill_group()
                raise
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _kill_group(self) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
