"""schemathesis against the live API's OpenAPI spec: generated requests never get a 5xx.

A small run (about 10 per operation); bench/service_fuzz.py runs >= 1,000.
"""

from __future__ import annotations

import pytest

from tests.api.conftest import LiveServer, load

pytestmark = pytest.mark.redis


def test_generated_requests_get_no_server_errors(service: dict) -> None:
    pytest.importorskip("schemathesis")
    from service_fuzz import fuzz

    from api.app import create_app

    env = {**service["env"], "OPENSCHOLAR_SERVICE__ANSWER_DEADLINE_S": "0.2"}
    server = LiveServer(create_app(load(env), engine=service["app"].state.runtime.engine, warm=False)).start()
    try:
        report = fuzz(server.url, service["keys"]["alice"], examples=10)
    finally:
        server.stop()
    assert report["server_errors"] == [], report["server_errors"][:3]
    assert report["requests"] >= 80
    assert len(report["per_operation"]) >= 10
    statuses = set(report["by_status"])
    assert statuses & {200, 202} and 422 in statuses, report["by_status"]
