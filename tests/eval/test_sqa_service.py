"""A ScholarQABench run through a live service: the API on uvicorn, a real Celery worker process on
Redis, the runner as an HTTP client (the scripted LLM answers inside the worker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.scholarqabench.loaders import load_task, task_spec
from eval.scholarqabench.runner import RunError, run_predictions
from eval.scholarqabench.service import ServiceClient

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def test_run_through_service_workers_and_resume(small_datastore: Path, shared_data: Path, tmp_path: Path) -> None:
    from tests.api.conftest import (
        LiveServer,
        WorkerProcess,
        load,
        make_key,
        redis_available,
        service_env,
    )

    if not redis_available():
        pytest.skip("Redis is not answering at 127.0.0.1:6379")
    from api.app import create_app

    env = service_env(small_datastore, tmp_path / "svc", OPENSCHOLAR_SERVICE__RATE_LIMIT_PER_MINUTE="100000",
                      OPENSCHOLAR_SERVICE__RATE_LIMIT_BURST="100000")
    worker = WorkerProcess(env, tmp_path / "worker.log", concurrency=2).start()
    settings = load(env)
    server = LiveServer(create_app(settings)).start()
    client = ServiceClient(server.url, make_key(settings, "eval"), poll_s=0.1)
    try:
        worker.wait_ready()
        from openscholar.engine import Engine

        engine = Engine.from_settings(settings)
        examples = load_task("scifact", root=shared_data / "scholarqabench")
        spec = task_spec("scifact")
        out = tmp_path / "preds.jsonl"
        first = run_predictions(engine, spec, examples, out, limit=2, service=client, in_flight=2, progress=False)
        assert (first.written, first.failed) == (2, 0)
        second = run_predictions(engine, spec, examples, out, limit=4, resume=True, service=client, progress=False)
        assert (second.written, second.skipped_done) == (2, 2)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(r["input"] for r in rows) == sorted(ex.input for ex in examples[:4])
        for r in rows:  # the gold abstract went to the worker as the passages
            gold = next(ex for ex in examples if ex.input == r["input"]).gold_ctxs[0]["text"]
            assert [c["text"] for c in r["ctxs"]] == [gold] and r["mode"] == "pipeline"
        with pytest.raises(RunError, match="closed_book"):
            run_predictions(engine, spec, examples, tmp_path / "cb.jsonl", mode="closed_book", limit=1,
                            service=client, progress=False)
    finally:
        client.close()
        server.stop()
        worker.stop()
