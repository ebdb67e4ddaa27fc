"""The recovery loop against both real job stores (Redis DB 13 with its own queue, SQLite in tmp):
a running job whose lease lapsed is queued again and handed to the broker, failed with a retryable
WorkerLost error after max_retries losses, cancelled if its cancel was asked; stored jobs never
handed over are handed over; nothing stays `running` without a live lease.

The broker hand-over is the Dispatcher's `submit` function (here: the list of ids it was given);
the store is real.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.jobs import Job, JobStore, RedisJobStore, SQLiteJobStore, new_id
from api.recovery import Dispatcher, Recovery
from tests.api.conftest import REDIS_URL, redis_available


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    queue = f"recovery-{uuid.uuid4().hex[:8]}"
    if request.param == "redis":
        if not redis_available():
            pytest.skip("Redis is not answering at 127.0.0.1:6379")
        s: JobStore = RedisJobStore(REDIS_URL, 600, queue=queue)
    else:
        s = SQLiteJobStore(tmp_path / "jobs.sqlite", 600, queue=queue)
    yield s
    s.close()


def _loop(store: JobStore, sent: list[str], max_retries: int = 2) -> Recovery:
    return Recovery(store, Dispatcher(store, submit=sent.extend), interval_s=1, max_retries=max_retries, lease_s=1)


def _running_without_lease(store: JobStore, **fields: object) -> Job:
    job = Job(id=new_id("job"), question="q?")
    store.create([job], dispatch_in_s=3600)
    store.mark_dispatched([job.id])
    assert store.acquire_lease(job.id, "dead-worker", 0.2)
    store.update(job.id, status="running", worker="host:123:abc", attempts=1, **fields)
    time.sleep(1.3)  # the lease lapses; updated_at is older than the 1 s grace
    return job


def test_a_job_whose_worker_died_is_queued_again_then_failed_after_max_retries(store: JobStore) -> None:
    sent: list[str] = []
    loop = _loop(store, sent, max_retries=2)
    job = _running_without_lease(store)
    live = Job(id=new_id("job"), question="still running?")
    store.create([live], dispatch_in_s=3600)
    store.mark_dispatched([live.id])
    assert store.acquire_lease(live.id, "live-worker", 60)
    store.update(live.id, status="running")
    time.sleep(1.1)
    assert loop.run_once()["requeued"] == 1
    again = store.get(job.id)
    assert again is not None and again.status == "queued" and again.lost == 1 and sent == [job.id]
    assert store.get(live.id).status == "running", "a job with a live lease is left alone"
    for loss in (2, 3):
        store.update(job.id, status="running")
        time.sleep(1.1)
        counts = loop.run_once()
    assert counts["failed"] == 1 and len(sent) == 2
    failed = store.get(job.id)
    assert failed.status == "failed" and failed.lost == 3
    assert failed.error["error"] == "WorkerLost" and failed.error["retryable"] is True
    assert "3 time(s)" in failed.error["message"] and "host:123:abc" in failed.error["message"]
    assert store.stats()["running"] == 1 and store.stats()["outcomes"].get("failed") == 1


def test_a_cancelled_job_on_a_dead_worker_ends_cancelled(store: JobStore) -> None:
    sent: list[str] = []
    job = _running_without_lease(store, cancel_requested=True)
    assert _loop(store, sent).run_once()["cancelled"] == 1
    assert store.get(job.id).status == "cancelled" and sent == []


def test_stored_jobs_never_handed_over_are_handed_over(store: JobStore) -> None:
    sent: list[str] = []
    jobs = [Job(id=new_id("job"), question=f"q{i}?") for i in range(3)]
    store.create(jobs, dispatch_in_s=0)
    store.mark_dispatched([jobs[0].id])  # this one reached the broker
    loop = _loop(store, sent)
    assert loop.run_once()["dispatched"] == 2 and sorted(sent) == sorted(j.id for j in jobs[1:])
    assert loop.run_once()["dispatched"] == 0, "handed over once"


def test_queue_positions_and_atomic_cancel(store: JobStore) -> None:
    jobs = [Job(id=new_id("job"), question=f"q{i}?", created_at=time.time() + i) for i in range(3)]
    store.create(jobs)
    assert [store.queue_position(j.id) for j in jobs] == [1, 2, 3] and store.queue_depth() == 3
    assert store.transition(jobs[0].id, ("queued",), status="running")
    assert not store.transition(jobs[0].id, ("queued",), status="running"), "a transition is conditional"
    assert store.queue_position(jobs[0].id) is None and store.queue_position(jobs[2].id) == 2
    store.update(jobs[1].id, status="succeeded")
    after = store.cancel([j.id for j in jobs])
    assert [(j.status, j.cancel_requested) for j in after] == [("running", True), ("succeeded", False),
                                                               ("cancelled", True)]
    assert store.queue_depth() == 0
