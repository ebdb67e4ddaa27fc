"""The JobStore contract: what the API, the workers and the recovery loop rely on, for every backend.

A backend's test class subclasses `JobStoreContract` and provides ``make_store(ttl_s, queue)``, a
fresh store on a private queue (and, for Redis, a private database and key prefix). The shared
tests cover the job's life: enqueue (records, order, queue positions, batches, the dispatch
outbox), leases (one owner at a time, renew, release, lapse), worker heartbeats, record expiry,
redelivery of a job whose lease lapsed, cancel (queued, running, finished), results and step
events, and conditional transitions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from api.jobs import Job, JobStore, new_id

MakeStore = Callable[[int, str], JobStore]


class JobStoreContract:
    @pytest.fixture
    def make_store(self) -> Iterator[MakeStore]:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    @pytest.fixture
    def store(self, make_store: MakeStore) -> JobStore:
        return make_store(600, f"contract-{uuid.uuid4().hex[:8]}")

    @staticmethod
    def _jobs(store: JobStore, n: int, **kw: object) -> list[Job]:
        jobs = [Job(id=new_id("job"), question=f"question {i}?", created_at=time.time() + i * 1e-3) for i in range(n)]
        store.create(jobs, **kw)  # type: ignore[arg-type]
        return jobs

    # -- enqueue --------------------------------------------------------------------------------
    def test_enqueued_jobs_read_back_in_order_with_queue_positions(self, store: JobStore) -> None:
        store.ping()
        jobs = self._jobs(store, 3)
        got = store.get(jobs[1].id)
        assert got is not None and got.question == "question 1?" and got.status == "queued"
        assert [j.id if j else None for j in store.get_many([jobs[2].id, "job_unknown", jobs[0].id])] == \
            [jobs[2].id, None, jobs[0].id]
        assert [store.queue_position(j.id) for j in jobs] == [1, 2, 3]
        assert store.queue_depth() == 3 and store.get("job_unknown") is None
        assert store.stats()["queued"] == 3 and store.stats()["running"] == 0

    def test_a_batch_lists_its_jobs(self, store: JobStore) -> None:
        jobs = self._jobs(store, 2, batch_id="batch_x", owner="alice")
        info = store.batch("batch_x")
        assert info is not None and info["job_ids"] == [j.id for j in jobs] and info["owner"] == "alice"
        assert info["total"] == 2 and store.batch("batch_unknown") is None

    def test_the_outbox_hands_over_each_stored_job_until_marked(self, store: JobStore) -> None:
        jobs = self._jobs(store, 2, dispatch_in_s=0.0)
        later = self._jobs(store, 1, dispatch_in_s=3600.0)
        taken = store.take_undispatched(10, retry_in_s=0.0)
        assert sorted(taken) == sorted(j.id for j in jobs) and later[0].id not in taken
        store.mark_dispatched([jobs[0].id])
        assert store.take_undispatched(10, retry_in_s=0.0) == [jobs[1].id]
        store.mark_dispatched([jobs[1].id])
        assert store.take_undispatched(10, retry_in_s=0.0) == []
        store.mark_undispatched([jobs[0].id], due_in_s=0.0)
        assert store.take_undispatched(10, retry_in_s=0.0) == [jobs[0].id]

    # -- leases and heartbeats ------------------------------------------------------------------
    def test_one_lease_holder_at_a_time(self, store: JobStore) -> None:
        (job,) = self._jobs(store, 1)
        assert store.acquire_lease(job.id, "worker-a", 30)
        assert not store.acquire_lease(job.id, "worker-b", 30)
        assert store.renew_lease(job.id, "worker-a", 30) and not store.renew_lease(job.id, "worker-b", 30)
        store.release_lease(job.id, "worker-b")  # not the owner: no effect
        assert not store.acquire_lease(job.id, "worker-b", 30)
        store.release_lease(job.id, "worker-a")
        assert store.acquire_lease(job.id, "worker-b", 30)

    def test_a_lapsed_lease_can_be_taken_and_not_renewed(self, store: JobStore) -> None:
        (job,) = self._jobs(store, 1)
        assert store.acquire_lease(job.id, "worker-a", 0.2)
        time.sleep(0.4)
        assert not store.renew_lease(job.id, "worker-a", 30)
        assert store.acquire_lease(job.id, "worker-b", 30)

    def test_heartbeats_name_the_live_workers_of_this_queue(self, store: JobStore, make_store: MakeStore) -> None:
        store.heartbeat("w1@host", {"pid": 1, "jobs": 0})
        store.heartbeat("w1@host", {"pid": 1, "jobs": 2})
        store.heartbeat("w2@host", {"pid": 2, "jobs": 0})
        workers = {w["worker"]: w for w in store.workers()}
        assert set(workers) == {"w1@host", "w2@host"} and workers["w1@host"]["jobs"] == 2
        assert all(0 <= w["age_s"] < 60 for w in workers.values())
        assert make_store(600, f"other-{uuid.uuid4().hex[:8]}").workers() == []

    # -- expiry and redelivery ------------------------------------------------------------------
    def test_records_expire_after_the_ttl(self, make_store: MakeStore) -> None:
        store = make_store(1, f"ttl-{uuid.uuid4().hex[:8]}")
        (job,) = self._jobs(store, 1)
        assert store.get(job.id) is not None
        time.sleep(2.2)
        assert store.get(job.id) is None and store.get_many([job.id]) == [None]

    def test_a_running_job_whose_lease_lapsed_is_redelivered(self, store: JobStore) -> None:
        dead, live, fresh = self._jobs(store, 3)
        for job, ttl in ((dead, 0.2), (live, 60.0), (fresh, 0.2)):
            store.mark_dispatched([job.id])
            assert store.acquire_lease(job.id, f"owner-{job.id}", ttl)
            store.update(job.id, status="running", attempts=1)
        time.sleep(1.2)
        store.update(fresh.id, progress={"step": "retrieve"})  # updated within the grace: left alone
        assert store.take_expired_leases(grace_s=1.0) == [dead.id]
        again = store.get(dead.id)
        assert again is not None and again.status == "queued" and store.queue_position(dead.id) == 1
        assert store.acquire_lease(dead.id, "new-owner", 30), "the lapsed lease is cleared"
        assert store.get(live.id).status == "running" and store.get(fresh.id).status == "running"  # type: ignore[union-attr]
        assert store.take_expired_leases(grace_s=1.0) == []

    # -- cancel, results, events ----------------------------------------------------------------
    def test_cancel_ends_a_queued_job_and_flags_a_running_one(self, store: JobStore) -> None:
        queued, running, done = self._jobs(store, 3)
        store.update(running.id, status="running")
        assert store.transition(done.id, ["queued"], status="succeeded", result={"text": "ok"})
        out = store.cancel([queued.id, running.id, done.id, "job_unknown"])
        assert out[3] is None
        assert out[0] is not None and out[0].status == "cancelled" and out[0].finished_at is not None
        assert out[1] is not None and out[1].status == "running" and out[1].cancel_requested
        assert out[2] is not None and out[2].status == "succeeded" and not out[2].cancel_requested
        assert store.queue_depth() == 0 and store.queue_position(queued.id) is None

    def test_results_and_conditional_transitions(self, store: JobStore) -> None:
        (job,) = self._jobs(store, 1)
        assert store.transition(job.id, ["queued"], status="running", worker="w1", started_at=time.time())
        assert not store.transition(job.id, ["queued"], status="running", worker="w2"), "already taken"
        result = {"text": "Vitamin D helps [1].", "references": [{"id": 1}]}
        assert store.transition(job.id, ["running"], status="succeeded", result=result, finished_at=time.time())
        got = store.get(job.id)
        assert got is not None and got.status == "succeeded" and got.result == result and got.worker == "w1"
        assert not store.transition(job.id, ["running"], status="failed"), "a finished job stays finished"
        assert not store.transition("job_unknown", ["queued"], status="running")
        store.record_outcome("succeeded")
        assert store.stats()["outcomes"] == {"succeeded": 1}

    def test_step_events_are_numbered_and_read_from_an_offset(self, store: JobStore) -> None:
        (job,) = self._jobs(store, 1)
        assert store.add_event(job.id, {"step": "retrieve", "status": "done"}) == 1
        assert store.add_event(job.id, {"step": "generate", "status": "done"}) == 2
        assert [e["step"] for e in store.events(job.id)] == ["retrieve", "generate"]
        assert [e["step"] for e in store.events(job.id, 1)] == ["generate"]
        got = store.get(job.id)
        assert got is not None and got.events == 2
        store.observe_step("retrieve", 0.07)
        steps = store.stats()["steps"]
        assert steps["retrieve"]["count"] == 1 and steps["retrieve"]["sum"] == pytest.approx(0.07)
