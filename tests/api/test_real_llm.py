"""One answer through the whole service with the real packaged SmolLM2 (transformers backend)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Client, LiveServer, WorkerProcess, load, make_key, service_env

pytestmark = [pytest.mark.llm, pytest.mark.slow, pytest.mark.redis]


@pytest.fixture()
def llm_service(small_datastore: Path, tmp_path: Path, redis_required: None) -> Iterator[dict]:
    from api.app import create_app

    env = service_env(small_datastore, tmp_path / "cache", OPENSCHOLAR_LLM__BACKEND="transformers",
                      OPENSCHOLAR_LLM__MAX_TOKENS="96", OPENSCHOLAR_SERVICE__ANSWER_DEADLINE_S="300")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    settings = load(env)
    server = LiveServer(create_app(settings)).start()
    try:
        worker.wait_ready(timeout=300)
        yield {"client": Client(server.url, make_key(settings, "alice"))}
    finally:
        server.stop()
        worker.stop()


def test_smollm2_answers_through_the_service(llm_service: dict) -> None:
    resp = llm_service["client"].post(
        "/v1/answer", json={"question": "Does vitamin D supplementation improve bone mineral density?",
                            "options": {"feedback": False, "top_k": 3}}, timeout=320)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["model"] and "scripted" not in answer["model"]
    assert answer["text"].strip() and answer["passages"]
    assert answer["usage"]["calls"] >= 1 and answer["usage"]["completion_tokens"] > 0
