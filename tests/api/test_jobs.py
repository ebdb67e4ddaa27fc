"""Jobs and batches through a real Celery worker on Redis: answers, SSE steps, cancel, batches."""

from __future__ import annotations

import json
import time

import pytest

from api.auth import hash_key
from tests.api.conftest import Client, LiveServer, load

pytestmark = pytest.mark.redis

QUESTION = "Does vitamin D supplementation improve bone mineral density?"


def test_answer_waits_for_the_worker(alice: Client) -> None:
    resp = alice.post("/v1/answer", json={"question": QUESTION, "options": {"feedback": False}})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["question"] == QUESTION
    cited = {n for s in answer["sentences"] for n in s["citations"]}
    assert cited, "the answer cites passages"
    assert cited <= {r["id"] for r in answer["references"]}
    for ref in answer["references"]:
        assert ref["text"] and ref["paper_id"]
    assert answer["bibtex"].count("@misc{") == len({r["paper_id"] for r in answer["references"]})
    job = alice.get(f"/v1/jobs/{resp.headers['X-Job-Id']}").json()
    assert job["status"] == "succeeded" and job["result"]["text"] == answer["text"]
    assert job["attempts"] == 1


def test_job_events_stream_steps_then_result(alice: Client) -> None:
    job = alice.post("/v1/jobs", json={"question": QUESTION}).json()
    assert job["status"] == "queued" and job["id"].startswith("job_")
    events: list[tuple[str, dict]] = []
    with alice.stream("GET", f"/v1/jobs/{job['id']}/events") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "result" and "step" in kinds and set(kinds[:-1]) <= {"status", "step"}, kinds
    states = [e for k, e in events if k == "status"]
    assert states and states[0]["status"] in ("queued", "running"), states
    assert all((e["status"] == "queued") == (e["queue_position"] is not None) for e in states), states
    steps = [e for k, e in events if k == "step"]
    assert {"step", "status", "elapsed_ms"} <= set(steps[0])
    assert steps[0]["status"] == "started"
    assert any(e["status"] == "finished" for e in steps)
    final = events[-1][1]
    assert final["status"] == "succeeded" and final["result"]["references"]
    # The trace of the answer names the same steps, in order, as the events that streamed.
    finished = [e["step"] for e in steps if e["status"] == "finished"]
    assert finished == [t["step"] for t in final["result"]["trace"]]
    # Replaying from an event id skips what the client already saw.
    with alice.stream("GET", f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(len(steps) - 2)}) as r2:
        replay = [line for line in r2.iter_lines() if line.startswith("event: ")]
    assert replay == ["event: step", "event: result"]


def test_jobs_belong_to_their_key(service: dict, alice: Client) -> None:
    job = alice.post("/v1/jobs", json={"question": QUESTION}).json()
    bob = Client(service["url"], service["keys"]["bob"])
    assert bob.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert bob.delete(f"/v1/jobs/{job['id']}").status_code == 404
    assert alice.wait_job(job["id"])["status"] == "succeeded"


def test_cancel_a_queued_job(service: dict, alice: Client) -> None:
    from api.celery_app import store

    # Queue the job without a worker seeing it first: store it directly, then cancel via the API.
    from api.jobs import Job, new_id

    job = Job(id=new_id("job"), question=QUESTION, owner=hash_key(service["keys"]["alice"])[:32])
    store().create([job])
    resp = alice.delete(f"/v1/jobs/{job.id}")
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    from api.tasks import submit

    submit(job.id)  # a late delivery of a cancelled job must not run it
    time.sleep(1.0)
    after = alice.get(f"/v1/jobs/{job.id}").json()
    assert after["status"] == "cancelled" and after["attempts"] == 0 and after["result"] is None


def test_answer_deadline_gives_202_then_the_job_finishes(service: dict) -> None:
    from api.app import create_app

    env = {**service["env"], "OPENSCHOLAR_SERVICE__ANSWER_DEADLINE_S": "0"}
    server = LiveServer(create_app(load(env), engine=service["app"].state.runtime.engine, warm=False)).start()
    try:
        c = Client(server.url, service["keys"]["alice"])
        resp = c.post("/v1/answer", json={"question": QUESTION, "options": {"feedback": False}})
        assert resp.status_code == 202
        assert resp.headers["Location"] == f"/v1/jobs/{resp.json()['id']}"
        assert c.wait_job(resp.json()["id"])["status"] == "succeeded"
    finally:
        server.stop()


def test_batch_json_and_jsonl(alice: Client, scifact_subset: dict) -> None:
    claims = list(scifact_subset["claims"].values())[:4]
    created = alice.post("/v1/batches", json={"questions": claims[:3] + [{"question": claims[3],
                                              "options": {"task": "claim"}}], "options": {"feedback": False}})
    assert created.status_code == 202, created.text
    batch = created.json()
    assert batch["total"] == 4
    jsonl = "\n".join(json.dumps(q) for q in claims[:2]) + "\n"
    upload = alice.post("/v1/batches", files={"file": ("qs.jsonl", jsonl.encode(), "application/x-ndjson")})
    assert upload.status_code == 202 and upload.json()["total"] == 2
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = alice.get(f"/v1/batches/{batch['id']}").json()
        if state["done"]:
            break
        time.sleep(0.2)
    assert state["counts"]["succeeded"] == 4 and sum(state["counts"].values()) == 4
    lines = alice.get(f"/v1/batches/{batch['id']}/results").text.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["question"] for r in rows] == claims
    assert rows[3]["result"]["task"] == "claim" and rows[3]["result"]["verdict"] in ("true", "false")
    assert all(r["status"] == "succeeded" and r["result"]["references"] for r in rows)


def test_batch_results_are_partial_while_running(service: dict, alice: Client) -> None:
    from api.celery_app import store
    from api.jobs import Job, new_id

    owner = hash_key(service["keys"]["alice"])[:32]
    # A batch whose jobs no worker has seen: finish one by hand, the other stays queued.
    batch_id = new_id("batch")
    jobs = [Job(id=new_id("job"), question=f"q{i}?", owner=owner, batch_id=batch_id) for i in range(2)]
    store().create(jobs, batch_id, owner)
    store().update(jobs[1].id, status="succeeded", result={"text": "done [0]"})
    state = alice.get(f"/v1/batches/{batch_id}").json()
    assert state["counts"] == {"queued": 1, "running": 0, "succeeded": 1, "failed": 0, "cancelled": 0}
    assert state["done"] is False
    rows = [json.loads(x) for x in alice.get(f"/v1/batches/{batch_id}/results").text.strip().splitlines()]
    assert [r["id"] for r in rows] == [jobs[1].id] and rows[0]["result"] == {"text": "done [0]"}
    store().update(jobs[0].id, status="failed", error={"kind": "internal", "message": "x"})
    rows = [json.loads(x) for x in alice.get(f"/v1/batches/{batch_id}/results").text.strip().splitlines()]
    assert [r["id"] for r in rows] == [jobs[0].id, jobs[1].id] and rows[0]["error"]["message"] == "x"
    assert alice.get(f"/v1/batches/{batch_id}").json()["done"] is True


def _stored_batch(service: dict, n: int) -> tuple[str, list]:
    """A batch stored directly (no worker sees it): its jobs stay queued until the test moves them."""
    from api.celery_app import store
    from api.jobs import Job, new_id

    owner = hash_key(service["keys"]["alice"])[:32]
    batch_id = new_id("batch")
    jobs = [Job(id=new_id("job"), question=f"q{i}?", owner=owner, batch_id=batch_id) for i in range(n)]
    store().create(jobs, batch_id, owner)
    store().mark_dispatched([j.id for j in jobs])
    return batch_id, jobs


def test_batch_lists_its_jobs_and_cancel_stops_what_has_not_finished(service: dict, alice: Client) -> None:
    from api.celery_app import store

    batch_id, jobs = _stored_batch(service, 4)
    positions = [alice.get(f"/v1/jobs/{j.id}").json()["queue_position"] for j in jobs]
    assert all(p is not None for p in positions) and positions == sorted(positions), positions
    assert positions[1:] == [positions[0] + i for i in range(1, 4)], positions
    store().update(jobs[0].id, status="succeeded", result={"text": "done [0]"})
    store().update(jobs[1].id, status="running")
    state = alice.get(f"/v1/batches/{batch_id}").json()
    assert [(j["id"], j["status"]) for j in state["jobs"]] == [
        (jobs[0].id, "succeeded"), (jobs[1].id, "running"), (jobs[2].id, "queued"), (jobs[3].id, "queued")]
    assert alice.get(f"/v1/jobs/{jobs[1].id}").json()["queue_position"] is None
    cancelled = alice.delete(f"/v1/batches/{batch_id}")
    assert cancelled.status_code == 200, cancelled.text
    got = {j["id"]: j["status"] for j in cancelled.json()["jobs"]}
    assert got == {jobs[0].id: "succeeded", jobs[1].id: "running", jobs[2].id: "cancelled", jobs[3].id: "cancelled"}
    assert alice.get(f"/v1/jobs/{jobs[1].id}").json()["cancel_requested"] is True, "the running job is asked to stop"
    assert alice.get(f"/v1/jobs/{jobs[0].id}").json()["result"] == {"text": "done [0]"}, "finished work is kept"
    bob = Client(service["url"], service["keys"]["bob"])
    assert bob.delete(f"/v1/batches/{batch_id}").status_code == 404


def test_a_batch_of_1000_is_accepted_with_its_job_ids(alice: Client) -> None:
    start = time.perf_counter()
    resp = alice.post("/v1/batches", json={"questions": [f"Does drug {i} lower blood pressure?" for i in range(1000)],
                                           "options": {"feedback": False}})
    took = time.perf_counter() - start
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["total"] == 1000 and len(set(body["job_ids"])) == 1000
    state = alice.delete(f"/v1/batches/{body['id']}").json()  # do not make the session's worker answer them
    assert len(state["jobs"]) == 1000 and state["counts"]["cancelled"] >= 990, state["counts"]
    print(f"1,000-question batch accepted in {took:.2f} s (bench/service_enqueue.py measures it)")


def test_metrics_report_outcomes_queue_and_step_durations(service: dict, alice: Client) -> None:
    import httpx

    job = alice.post("/v1/jobs", json={"question": QUESTION, "options": {"feedback": False}}).json()
    assert alice.wait_job(job["id"])["status"] == "succeeded"
    text = httpx.get(service["url"] + "/metrics").text
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
             if line and not line.startswith("#")}
    assert lines['openscholar_jobs_finished_total{status="succeeded"}'] >= 1
    assert "openscholar_queue_depth" in lines and "openscholar_jobs_running" in lines
    assert lines['openscholar_step_seconds_count{step="generate"}'] >= 1
    assert lines['openscholar_step_seconds_bucket{le="+Inf",step="generate"}'] == \
        lines['openscholar_step_seconds_count{step="generate"}']


def test_a_partial_answer_is_stored_as_a_success(service: dict, alice: Client) -> None:
    """The answer loop ran out of its feedback budget: the job succeeds with the checked draft,
    marked partial (run in this process through the real task, store, engine and HTTP LLM)."""
    from service_llm_stub import StubServer

    from api import celery_app
    from api.jobs import Job, new_id
    from api.tasks import answer_job
    from tests.api.conftest import free_port

    port = free_port()
    stub = StubServer(port, 1.0).start()
    env = {**service["env"], "OPENSCHOLAR_LLM__BACKEND": "openai", "OPENSCHOLAR_LLM__BASE_URL": f"http://127.0.0.1:{port}/v1",
           "OPENSCHOLAR_LLM__MAX_RETRIES": "0", "OPENSCHOLAR_ANSWER__BUDGETS__FEEDBACK_S": "0.3"}
    celery_app.configure(load(env))
    try:
        job = Job(id=new_id("job"), question=QUESTION, owner=hash_key(service["keys"]["alice"])[:32])
        celery_app.store().create([job])
        celery_app.store().mark_dispatched([job.id])
        assert answer_job.apply(args=[job.id]).get() == "succeeded"
    finally:
        celery_app.configure(service["settings"])
        stub.stop()
    out = alice.get(f"/v1/jobs/{job.id}").json()
    assert out["status"] == "succeeded" and out["partial"] is True, out
    assert out["result"]["partial"] is True and out["result"]["partial_step"] == "feedback", out["result"]
    assert out["result"]["text"] and out["result"]["references"], "the checked draft is kept"
