"""The worker's task: answer one job's question, idempotently.

A job's message may arrive more than once (its worker died, the broker or the API's recovery loop
redelivered it): a finished job is not run again, and a job whose lease another live worker holds is
put back for later. Only retryable errors (LLM or store unreachable) are retried, with exponential
backoff; the job keeps its state and step events in the job store so any API process can serve them.
An answer with no readable text is a failure with its reason, never a success. An answer the loop
cut short at its time budget (``partial``, with ``partial_step``) is a success: the checked draft.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from celery.exceptions import Retry, SoftTimeLimitExceeded

from api import celery_app as rt
from api.celery_app import celery
from api.jobs import TERMINAL
from api.quality import answer_problem
from datastore.errors import ScholarError

log = logging.getLogger(__name__)

ANSWER_TASK = "openscholar.answer"


class _Lease:
    """Renews the job's lease while the job runs, so a dead worker's lease lapses quickly.

    If the lease was lost (the store was down longer than the lease, and another worker took the
    job over), ``lost`` is set and the run stops without writing a result.
    """

    def __init__(self, job_id: str, owner: str, lease_s: float) -> None:
        self.job_id, self.owner, self.lease_s = job_id, owner, lease_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"lease-{job_id[:12]}")

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                store = rt.store()
                if not store.renew_lease(self.job_id, self.owner, self.lease_s) and \
                        not store.acquire_lease(self.job_id, self.owner, self.lease_s):
                    self.lost = True
                    log.warning("job %s: lost its lease to another worker; stopping this run", self.job_id)
                    return
            except ScholarError:
                pass  # store down: the lease may lapse; the job's result write waits for the store

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()


def _wait_for_store(fn: Any, *args: Any, deadline_s: float = 120.0, **kwargs: Any) -> Any:
    """Run a store write, waiting out a store restart (bounded), so a finished answer is not lost."""
    start, delay = time.monotonic(), 0.25
    while True:
        try:
            return fn(*args, **kwargs)
        except ScholarError as exc:
            if exc.kind != "unavailable" or time.monotonic() - start > deadline_s:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class JobCancelled(Exception):
    pass


class LeaseLost(Exception):
    pass


class AnswerTask(celery.Task):  # type: ignore[name-defined,misc]
    """Records a job as failed when its task fails outside the task body (hard time limit)."""

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        _on_failure(exc, args, kwargs)


@celery.task(bind=True, base=AnswerTask, name=ANSWER_TASK, acks_late=True, reject_on_worker_lost=True,
             max_retries=None)
def answer_job(self: Any, job_id: str) -> str:
    """Answer job ``job_id`` and store the result; returns the job's final status."""
    store, svc = rt.store(), rt.settings().service
    job = store.get(job_id)
    if job is None:
        return "missing"  # expired or never stored: nothing to do
    if job.status in TERMINAL:
        return job.status  # a redelivered copy of a finished job
    if job.cancel_requested:
        if store.transition(job_id, ("queued", "running"), status="cancelled", finished_at=time.time()):
            store.record_outcome("cancelled")
        return "cancelled"
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not store.acquire_lease(job_id, owner, svc.job_lease_s):
        # Another worker holds it (or held it until it died): look again once the lease can lapse.
        raise self.retry(countdown=svc.job_lease_s, max_retries=None)

    retry_in: float | None = None
    try:
        with _Lease(job_id, owner, svc.job_lease_s) as lease:
            status = _run(job_id, owner, lease)
    except _RetryLater as later:
        retry_in = later.countdown
        status = "queued"
    finally:
        try:
            store.release_lease(job_id, owner)
        except ScholarError:
            pass
    if retry_in is not None:
        raise self.retry(countdown=retry_in, max_retries=None)
    return status


class _RetryLater(Exception):
    def __init__(self, countdown: float) -> None:
        self.countdown = countdown


def _finish(job_id: str, status: str, **fields: Any) -> str:
    """The job's final state, written once the store answers; counted in the outcome statistics."""
    store = rt.store()
    _wait_for_store(store.update, job_id, status=status, finished_at=time.time(), **fields)
    try:
        store.record_outcome(status)
    except ScholarError:
        log.warning("job %s: could not count its outcome (store down)", job_id)
    return status


def _run(job_id: str, owner: str, lease: _Lease) -> str:
    from openscholar.options import AnswerOptions

    store, svc = rt.store(), rt.settings().service
    job = store.get(job_id)
    if job is None or job.status in TERMINAL:
        return job.status if job else "missing"
    if not store.transition(job_id, ("queued", "running"), status="running",
                            started_at=job.started_at or time.time(), attempts=job.attempts + 1, worker=owner):
        current = store.get(job_id)
        return current.status if current else "missing"
    last_check = [0.0, False]

    def on_event(event: dict[str, Any]) -> None:
        try:
            store.add_event(job_id, dict(event))
            if event.get("status") == "finished" and event.get("elapsed_ms") is not None:
                store.observe_step(str(event.get("step")), float(event["elapsed_ms"]) / 1000)
        except ScholarError:
            log.warning("job %s: could not store step event %s (store down)", job_id, event.get("step"))

    def should_cancel() -> bool:
        if lease.lost:
            return True
        now = time.monotonic()
        if now - last_check[0] > 0.5:
            last_check[0] = now
            try:
                current = store.get(job_id)
                last_check[1] = bool(current and current.cancel_requested)
            except ScholarError:
                pass
        return bool(last_check[1])

    def stopped() -> str:
        """Why the run stopped early: cancelled by the caller, or superseded (lease lost)."""
        if lease.lost:
            raise LeaseLost()
        return _finish(job_id, "cancelled")

    try:
        options = AnswerOptions.model_validate(job.options or {})
        answer = rt.engine().answer(job.question, options, on_event=on_event, should_cancel=should_cancel)
        if should_cancel():
            return stopped()
        result = answer.model_dump(mode="json")
        result["bibtex"] = answer.to_bibtex()
        problem = answer_problem(result)
        if problem is not None:
            # 422 for /v1/answer: the question (or the passages given) led to no usable answer; not a fault of
            # the service (a 5xx), and asking the same again gives the same (greedy decoding).
            error = {"error": "UnusableAnswer", "kind": "invalid_input", "retryable": False, "message": problem,
                     "hint": "ask again with a more specific question, or use a larger model (llm.backend=openai)"}
            return _finish(job_id, "failed", error=error, progress={**job.progress, "step": "done", "status": "done"})
        return _finish(job_id, "succeeded", result=result, error=None,
                       progress={**job.progress, "step": "done", "status": "done"})
    except LeaseLost:
        return "superseded"
    except (JobCancelled, SoftTimeLimitExceeded) as exc:
        if isinstance(exc, JobCancelled) or should_cancel():
            return stopped()
        soft, _ = rt.time_limits(rt.settings())
        error = {"error": "JobTimedOut", "kind": "unavailable", "retryable": False,
                 "message": f"the job ran past its time limit of {soft:g} s (the answer loop overran its budget)",
                 "hint": "lower answer.budgets.total_s, or raise service.soft_time_limit_s"}
        return _finish(job_id, "failed", error=error)
    except Retry:
        raise
    except ScholarError as exc:
        if should_cancel():
            return stopped()
        if exc.retryable and job.retries < svc.max_retries:
            delay = svc.retry_backoff_s * (2**job.retries)
            log.warning("job %s: retryable error, retry %d in %.1f s: %s", job_id, job.retries + 1, delay, exc)
            _wait_for_store(store.update, job_id, status="queued", retries=job.retries + 1, error=exc.to_dict())
            raise _RetryLater(delay) from exc
        return _finish(job_id, "failed", error=exc.to_dict())
    except Exception:
        if should_cancel():
            return stopped()
        log.exception("job %s failed with an unexpected error", job_id)
        error = {"error": "InternalError", "kind": "internal", "retryable": False,
                 "message": "the worker hit an unexpected error", "hint": "the error was logged on the worker"}
        return _finish(job_id, "failed", error=error)


def _on_failure(exc: Exception, args: Any, kwargs: Any) -> None:
    """Hard time limit (the process was killed) or a failure outside ``_run``: the job fails visibly."""
    job_id = args[0] if args else kwargs.get("job_id")
    try:
        job = rt.store().get(job_id)
        if job is not None and job.status not in TERMINAL:
            _finish(job_id, "failed", error={
                "error": type(exc).__name__, "kind": "internal", "retryable": False,
                "message": f"the job's worker stopped it ({type(exc).__name__})",
                "hint": "see the worker log; a job past service.hard_time_limit_s is killed"})
    except ScholarError:
        log.warning("job %s: could not record its failure (store down)", job_id)


def submit(job_id: str) -> None:
    """Queue a stored job for the workers (task id = job id, so duplicates are recognisable)."""
    answer_job.apply_async(args=[job_id], task_id=job_id)


def submit_many(job_ids: list[str]) -> None:
    """Queue several jobs through one producer (one broker connection for all of them)."""
    if len(job_ids) == 1:
        submit(job_ids[0])
        return
    with celery.producer_or_acquire() as producer:
        for jid in job_ids:
            answer_job.apply_async(args=[jid], task_id=jid, producer=producer)
