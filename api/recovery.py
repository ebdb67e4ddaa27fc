"""Getting every stored job to a worker, and back from a dead one: the dispatcher and the recovery loop.

Jobs are written to the job store first (a whole batch in one transaction, so 1,000 questions are
accepted in well under a second) and handed to the broker after: a single job at once (the caller
waits for it), a batch by a background thread of the API process. Every API process also runs the
recovery loop, every ``service.recovery_interval_s``:

- a running job whose lease lapsed (its worker was killed, or went silent) is queued again and sent
  to the workers, or failed with a retryable ``WorkerLost`` error once its workers died more than
  ``service.max_retries`` times (a job that kills its worker every time must not loop forever);
  a cancelled one is marked cancelled;
- a stored job the broker never got (the API process died before handing it over) is handed over.

Both take their jobs with atomic claims in the store, so any number of API processes can run them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from api.jobs import JobStore
from datastore.errors import ScholarError

log = logging.getLogger(__name__)

CHUNK = 100


def _submit_many(job_ids: list[str]) -> None:
    from api.tasks import submit_many

    submit_many(job_ids)


class Dispatcher:
    """Hands stored jobs to the broker, now (``send``) or in the background (``send_later``)."""

    def __init__(self, store: JobStore, submit: Callable[[list[str]], None] = _submit_many) -> None:
        self.store, self.submit = store, submit
        self._queue: queue.Queue[list[str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, job_ids: list[str]) -> None:
        """Publish now; raises when the broker cannot be reached (the caller answers 503)."""
        self.submit(job_ids)
        self.store.mark_dispatched(job_ids)

    def send_later(self, job_ids: list[str]) -> None:
        """Publish in the background, in chunks; what fails stays in the outbox for the recovery loop."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._drain, daemon=True, name="dispatcher")
                self._thread.start()
        self._queue.put(list(job_ids))

    def _drain(self) -> None:
        while True:
            ids = self._queue.get()
            if ids is None:
                return
            for i in range(0, len(ids), CHUNK):
                chunk = ids[i : i + CHUNK]
                try:
                    self.send(chunk)
                except Exception as exc:  # noqa: BLE001 - left in the outbox; the recovery loop retries
                    log.warning("could not hand %d job(s) to the broker (%s); the recovery loop will retry",
                                len(chunk), exc)

    def pending(self) -> int:
        return self._queue.qsize()

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)


def worker_lost_error(times: int, worker: str | None) -> dict[str, Any]:
    return {"error": "WorkerLost", "kind": "unavailable", "retryable": True,
            "message": f"the job's worker stopped while running it, {times} time(s) (last: {worker or 'unknown'})",
            "hint": "submit it again; if it keeps failing, the question may be too heavy for the workers "
                    "(memory or time): see the worker logs"}


class Recovery:
    """The recovery loop of one API process (a daemon thread; ``run_once`` for tests and tools)."""

    def __init__(self, store: JobStore, dispatcher: Dispatcher, *, interval_s: float, max_retries: int,
                 lease_s: float, on_outcome: Callable[[str], None] | None = None) -> None:
        self.store, self.dispatcher = store, dispatcher
        self.interval_s, self.max_retries, self.lease_s = interval_s, max_retries, lease_s
        self.on_outcome = on_outcome
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Recovery:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="recovery")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except ScholarError as exc:
                log.debug("recovery pass skipped: %s", exc)  # the store is down; /readyz says so
            except Exception:  # never let the loop die
                log.exception("recovery pass failed")

    def run_once(self) -> dict[str, int]:
        """One pass; returns how many jobs were requeued, failed, cancelled and handed over."""
        counts = {"requeued": 0, "failed": 0, "cancelled": 0, "dispatched": 0}
        for job_id in self.store.take_expired_leases(grace_s=1.0):
            counts[self._take_back(job_id)] += 1
        due = self.store.take_undispatched(limit=500, retry_in_s=max(30.0, self.interval_s * 6))
        if due:
            try:
                self.dispatcher.send(due)
                counts["dispatched"] = len(due)
                log.warning("handed %d stored job(s) to the broker that no API process had sent", len(due))
            except Exception as exc:  # noqa: BLE001 - still in the outbox; next pass after retry_in_s
                log.warning("could not hand %d stored job(s) to the broker: %s", len(due), exc)
        return counts

    def _take_back(self, job_id: str) -> str:
        job = self.store.get(job_id)
        if job is None:
            return "requeued"
        now = time.time()
        if job.cancel_requested:
            self.store.transition(job_id, ("queued",), status="cancelled", finished_at=now)
            self._outcome("cancelled")
            return "cancelled"
        lost = job.lost + 1
        if lost > self.max_retries:
            self.store.transition(job_id, ("queued",), status="failed", finished_at=now, lost=lost,
                                  error=worker_lost_error(lost, job.worker))
            log.warning("job %s: its worker %s stopped %d time(s) while running it; failed", job_id, job.worker, lost)
            self._outcome("failed")
            return "failed"
        self.store.update(job_id, lost=lost, progress={**job.progress, "status": "requeued"})
        log.warning("job %s: its worker %s stopped renewing the lease; queued again (loss %d of at most %d)",
                    job_id, job.worker, lost, self.max_retries)
        try:
            self.dispatcher.send([job_id])
        except Exception as exc:  # noqa: BLE001 - back in the outbox for a later pass
            log.warning("job %s: could not send it again yet: %s", job_id, exc)
            self.store.mark_undispatched([job_id], due_in_s=self.interval_s)
        return "requeued"

    def _outcome(self, status: str) -> None:
        try:
            self.store.record_outcome(status)
        except ScholarError:
            pass
