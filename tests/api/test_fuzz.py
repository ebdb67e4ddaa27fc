"""schemathesis against the live API's OpenAPI spec: generated requests never get a 5xx.

A small run (about 10 per operation, a few stateful scenarios) in the default suite; the slow
``test_fuzz_many`` runs >= 1,000 cases with stateful batch scenarios and saves its counts
(bench/results/service_fuzz.json).
"""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import LiveServer, WorkerProcess, load

pytestmark = pytest.mark.redis


def test_generated_requests_get_no_server_errors(service: dict) -> None:
    pytest.importorskip("schemathesis")
    from service_fuzz import fuzz

    from api.app import create_app

    env = {**service["env"], "OPENSCHOLAR_SERVICE__ANSWER_DEADLINE_S": "0.2"}
    server = LiveServer(create_app(load(env), engine=service["app"].state.runtime.engine, warm=False)).start()
    try:
        report = fuzz(server.url, service["keys"]["alice"], examples=10, scenarios=3)
    finally:
        server.stop()
    assert report["server_errors"] == [], report["server_errors"][:3]
    assert report["requests"] >= 80
    assert len(report["per_operation"]) >= 10
    statuses = set(report["by_status"])
    assert statuses & {200, 202} and 422 in statuses, report["by_status"]
    assert report["stateful"]["calls"] >= 3


@pytest.mark.slow
def test_fuzz_many(service: dict) -> None:
    """>= 1,000 generated requests, stateful scenarios following the batch and job links: no 5xx."""
    import json
    import os
    from pathlib import Path

    pytest.importorskip("schemathesis")
    from service_fuzz import fuzz

    from api.app import create_app

    # Its own queue and worker: the thousands of jobs it queues must not hold up the session's worker.
    env = {**service["env"], "OPENSCHOLAR_SERVICE__ANSWER_DEADLINE_S": "0.2",
           "OPENSCHOLAR_SERVICE__QUEUE": f"fuzz-{uuid.uuid4().hex[:8]}",
           "OPENSCHOLAR_SERVICE__QUESTION_BURST": "100000000", "OPENSCHOLAR_SERVICE__QUESTION_RATE_PER_MINUTE": "1e9"}
    worker = WorkerProcess(env, service["cache"] / "fuzz-worker.log").start()
    server = LiveServer(create_app(load(env), engine=service["app"].state.runtime.engine, warm=False)).start()
    try:
        worker.wait_ready()
        report = fuzz(server.url, service["keys"]["alice"], examples=int(os.environ.get("FUZZ_EXAMPLES", "80")),
                      scenarios=int(os.environ.get("FUZZ_SCENARIOS", "60")))
    finally:
        server.stop()
        worker.stop()
    out = Path(__file__).resolve().parents[2] / "bench" / "results" / "service_fuzz.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("requests", "seconds", "by_status", "stateful")}, indent=2))
    assert report["server_errors"] == [], report["server_errors"][:3]
    assert report["requests"] >= 1000
    assert report["stateful"]["linked_calls_ok"] > 0, "no stateful call reached a created batch or job"
