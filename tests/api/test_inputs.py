"""Every bad input a user can send gets a 4xx with a clear JSON error, never a 500 or a trace.

Against the live session deployment (Redis, a real worker): batches with an empty question in each
format, event ids out of range, an oversized chunked body, floods without a key, unbounded max_tokens,
supplied passages without text.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import Client, LiveServer, load

pytestmark = pytest.mark.redis


def _clear(resp: httpx.Response, status: int, *needles: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert {"error", "kind", "message", "hint", "retryable"} <= set(body), body
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    for needle in needles:
        assert needle in body["message"], (needle, body["message"])
    return body


def test_a_batch_with_an_empty_question_is_422_naming_it(alice: Client) -> None:
    _clear(alice.post("/v1/batches", json=["Is sleep good?", ""]), 422, "question 2", "empty")
    _clear(alice.post("/v1/batches", json={"questions": ["ok?", "   "]}), 422, "question 2", "empty")
    _clear(alice.post("/v1/batches", json=[{"question": ""}]), 422, "question 1")
    jsonl = b'"Is sleep good?"\n\n{"question": "Does tea help?"}\n""\n'
    _clear(alice.post("/v1/batches", content=jsonl, headers={"Content-Type": "application/x-ndjson"}), 422,
           "line 4", "empty")
    upload = alice.post("/v1/batches", files={"file": ("q.jsonl", b'"ok?"\n{"question": "  "}\n', "application/x-ndjson")})
    _clear(upload, 422, "line 2")
    _clear(alice.post("/v1/batches", json=[7]), 422, "question 1", "string or an object")
    _clear(alice.post("/v1/batches", json=[]), 422, "no questions")
    _clear(alice.post("/v1/batches", json={"questions": ["a?"], "extra": 1}), 422, "extra")


def test_event_ids_out_of_range_are_422(alice: Client) -> None:
    job = alice.post("/v1/jobs", json={"question": "Is sleep good for memory?", "options": {"feedback": False}}).json()
    for bad in ("9" * 5000, "-1", "abc", "1e3", str(10**7)):
        resp = alice.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": bad})
        _clear(resp, 422, "Last-Event-ID")
        assert len(resp.json()["message"]) < 300
    alice.wait_job(job["id"])


def test_a_chunked_body_over_the_limit_is_413(service: dict, alice: Client) -> None:
    limit = service["settings"].service.max_request_bytes

    def chunks():
        piece = b"x" * 65536
        for _ in range(20 * 1024 * 1024 // len(piece)):
            yield piece

    resp = alice.post("/v1/batches", content=chunks(), headers={"Content-Type": "application/json"})
    _clear(resp, 413, f"larger than {limit} bytes")
    small = alice.post("/v1/batches", content=iter([b'["Does coffee', b' raise blood pressure?"]']),
                       headers={"Content-Type": "application/json"})
    assert small.status_code == 202, small.text
    alice.delete(f"/v1/batches/{small.json()['id']}")


def test_unauthenticated_floods_are_rate_limited_per_address(service: dict) -> None:
    from api.app import create_app

    env = {**service["env"], "OPENSCHOLAR_SERVICE__ANON_RATE_LIMIT_BURST": "5",
           "OPENSCHOLAR_SERVICE__ANON_RATE_LIMIT_PER_MINUTE": "6"}
    server = LiveServer(create_app(load(env), engine=service["app"].state.runtime.engine, warm=False)).start()
    try:
        codes = [httpx.post(server.url + "/v1/search", json={"query": "x", "k": 1},
                            headers={"Authorization": "Bearer osk_wrong"} if i % 2 else {}).status_code
                 for i in range(8)]
        assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3, codes
        body = _clear(httpx.get(server.url + "/v1/jobs/x"), 429, "client address without a valid key")
        assert body["retryable"] is True
        ok = Client(server.url, service["keys"]["alice"]).post("/v1/search", json={"query": "sleep", "k": 1})
        assert ok.status_code == 200, "a valid key is charged to its own bucket, not the address's"
    finally:
        server.stop()


def test_options_are_bounded_and_passages_checked_before_queueing(service: dict, alice: Client) -> None:
    limit = service["settings"].service.max_answer_tokens
    _clear(alice.post("/v1/jobs", json={"question": "q?", "options": {"max_tokens": limit + 1}}), 422,
           "max_tokens", str(limit))
    empty = alice.post("/v1/jobs", json={"question": "q?", "options": {"passages": []}})
    _clear(empty, 422, "passages is empty")
    _clear(alice.post("/v1/answer", json={"question": "q?", "options": {"max_tokens": 10**9}}), 422, "max_tokens")
    no_text = {"question": "q?", "options": {"passages": [{"title": "T", "text": "fine"}, {"title": "T2"}]}}
    assert alice.post("/v1/jobs", json=no_text).status_code == 422
    blank = {"question": "q?", "options": {"passages": [{"title": "T", "text": "   "}]}}
    assert alice.post("/v1/answer", json=blank).status_code == 422
    batch = alice.post("/v1/batches", json={"questions": ["a?", {"question": "b?", "options": {"max_tokens": limit * 2}}]})
    _clear(batch, 422, "question 2", "max_tokens")


def test_rate_limits_count_questions(service: dict) -> None:
    from api.app import create_app

    env = {**service["env"], "OPENSCHOLAR_SERVICE__QUESTION_BURST": "5",
           "OPENSCHOLAR_SERVICE__QUESTION_RATE_PER_MINUTE": "6"}
    server = LiveServer(create_app(load(env), engine=service["app"].state.runtime.engine, warm=False)).start()
    try:
        c = Client(server.url, service["keys"]["bob"])
        first = c.post("/v1/batches", json=[f"Is sleep {i} good?" for i in range(4)])
        assert first.status_code == 202, first.text
        body = _clear(c.post("/v1/batches", json=["a?", "b?"]), 429, "6 questions per minute")
        assert int(c.post("/v1/jobs", json={"question": "c?"}).status_code) == 202, "one token was left"
        assert body["retryable"] is True
        _clear(c.post("/v1/batches", json=[f"q{i}?" for i in range(6)]), 413, "6 questions at once")
        c.delete(f"/v1/batches/{first.json()['id']}")
    finally:
        server.stop()


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty answer"), ("[0] [1]", "only citation markers"), ("\ufffd\ufffd\ufffd\ufffd", "undecodable"),
    ("123 456 !!! ??? ### 789", "no words"), ("the " * 30, "loop"),
    ("#$%^&*()!@#$%^&*()!@#$%^&* ab", "garbled"),
])
def test_unusable_answers_are_named(text: str, reason: str) -> None:
    from api.quality import answer_problem

    problem = answer_problem({"text": text})
    assert problem is not None and reason in problem, problem
    assert answer_problem({"text": "Vitamin D supplementation improves bone density in older adults [0]."}) is None
    assert answer_problem({"text": "No."}) is None


def test_job_json_has_no_stack_traces(alice: Client) -> None:
    resp = alice.post("/v1/batches", content=b'{"questions": [1, 2', headers={"Content-Type": "application/json"})
    _clear(resp, 422, "not JSON")
    assert json.loads(resp.text)["hint"]
