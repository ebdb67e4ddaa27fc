"""The HTTP surface against a live server: auth, limits, search, errors, health, metrics, OpenAPI."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import Client, LiveServer, load

pytestmark = pytest.mark.redis


def test_search_needs_a_valid_key(service: dict) -> None:
    anon = httpx.post(service["url"] + "/v1/search", json={"query": "vitamin D", "k": 3})
    assert anon.status_code == 401
    assert anon.headers["WWW-Authenticate"] == "Bearer"
    assert "openscholar keys create" in anon.json()["hint"]
    bad = httpx.post(service["url"] + "/v1/search", json={"query": "vitamin D", "k": 3},
                     headers={"Authorization": "Bearer osk_not-a-key"})
    assert bad.status_code == 401
    assert bad.json()["message"] == "the API key is not valid"


def test_search_returns_the_gold_abstract(service: dict, alice: Client, scifact_subset: dict) -> None:
    qid, claim = next(iter(scifact_subset["claims"].items()))
    gold = set(scifact_subset["qrels"][qid])
    resp = alice.post("/v1/search", json={"query": claim, "k": 10})
    assert resp.status_code == 200
    body = resp.json()
    assert len(body["hits"]) == 10
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert gold & {h["paper_id"] for h in body["hits"]}, "the gold abstract is in the top 10"
    direct = service["app"].state.runtime.engine.search(claim, 10)
    assert [h["passage_id"] for h in body["hits"]] == [h.passage.passage_id for h in direct]


def test_limits_give_clear_errors(service: dict, alice: Client) -> None:
    limit = service["settings"].service.max_question_chars
    long_q = alice.post("/v1/search", json={"query": "x" * (limit + 1), "k": 3})
    assert long_q.status_code == 422
    assert f"the limit is {limit}" in long_q.json()["message"]
    long_job = alice.post("/v1/jobs", json={"question": "why " * limit})
    assert long_job.status_code == 422 and "question" in long_job.json()["message"]
    big_k = alice.post("/v1/search", json={"query": "sleep", "k": 10_000})
    assert big_k.status_code == 422 and "k=10000" in big_k.json()["message"]
    huge = alice.post("/v1/batches", content=b"[" + b'"q",' * 600_000 + b'"q"]',
                      headers={"Content-Type": "application/json"})
    assert huge.status_code == 413
    assert "larger than" in huge.json()["message"]
    missing = alice.post("/v1/search", json={"k": 3})
    assert missing.status_code == 422 and missing.json()["problems"][0]["field"] == "query"
    unknown_option = alice.post("/v1/jobs", json={"question": "q?", "options": {"temperature": 3}})
    assert unknown_option.status_code == 422


def test_errors_are_json_without_traces(alice: Client) -> None:
    for resp in (
        alice.get("/v1/jobs/job_does_not_exist"),
        alice.get("/v1/batches/nope"),
        alice.post("/v1/batches", content=b"{not json", headers={"Content-Type": "application/json"}),
        alice.post("/v1/batches", content=b'"q1"\n{oops\n', headers={"Content-Type": "application/x-ndjson"}),
        alice.get("/v1/nothing-here"),
    ):
        assert resp.status_code in (404, 422), resp.text
        body = resp.json()
        assert body["message"] and "Traceback" not in resp.text and 'File "' not in resp.text
    assert "line 2" in alice.post("/v1/batches", content=b'"q1"\n{oops\n',
                                  headers={"Content-Type": "application/x-ndjson"}).json()["message"]


def test_rate_limit_per_key(service: dict) -> None:
    from api.app import create_app

    env = {**service["env"], "OPENSCHOLAR_SERVICE__RATE_LIMIT_BURST": "3",
           "OPENSCHOLAR_SERVICE__RATE_LIMIT_PER_MINUTE": "6"}
    server = LiveServer(create_app(load(env), engine=service["app"].state.runtime.engine, warm=False)).start()
    try:
        a, b = Client(server.url, service["keys"]["alice"]), Client(server.url, service["keys"]["bob"])
        codes = [a.get("/v1/jobs/job_x").status_code for _ in range(4)]
        assert codes == [404, 404, 404, 429]
        limited = a.get("/v1/jobs/job_x")
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 10
        assert "6 requests per minute" in limited.json()["message"]
        assert b.get("/v1/jobs/job_x").status_code == 404, "another key has its own bucket"
        metrics = httpx.get(server.url + "/metrics").text
        assert "openscholar_rate_limited_total 2.0" in metrics
    finally:
        server.stop()


def test_cors_from_settings(service: dict) -> None:
    from api.app import create_app

    env = {**service["env"], "OPENSCHOLAR_SERVICE__CORS_ORIGINS": '["https://lab.example.org"]'}
    server = LiveServer(create_app(load(env), engine=service["app"].state.runtime.engine, warm=False)).start()
    try:
        pre = {"Origin": "https://lab.example.org", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,content-type"}
        ok = httpx.options(server.url + "/v1/search", headers=pre)
        assert ok.headers.get("access-control-allow-origin") == "https://lab.example.org"
        other = httpx.options(server.url + "/v1/search", headers={**pre, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        server.stop()
    plain = httpx.options(service["url"] + "/v1/search", headers={**pre})
    assert "access-control-allow-origin" not in plain.headers, "no CORS unless configured"


def test_health_ready_metrics_docs(service: dict, alice: Client) -> None:
    url = service["url"]
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(url + "/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert set(checks) == {"datastore", "job_store", "broker", "llm", "workers"}, checks
    assert all(c["ok"] for c in checks.values()), checks
    n = len(service["app"].state.runtime.engine.datastore)
    assert checks["datastore"]["detail"] == f"open ({n} passages)" and n >= 200
    assert "worker process(es) alive" in checks["workers"]["detail"]
    alice.post("/v1/search", json={"query": "insulin", "k": 2})
    metrics = httpx.get(url + "/metrics").text
    assert 'openscholar_http_requests_total{method="POST",route="/v1/search",status="200"}' in metrics
    assert "openscholar_search_seconds_count" in metrics
    spec = httpx.get(url + "/openapi.json").json()
    assert {"/v1/search", "/v1/answer", "/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/batches",
            "/v1/batches/{batch_id}/results", "/readyz"} <= set(spec["paths"])
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "<title>OpenScholar</title>" in page.text
    json.dumps(spec)


def test_keys_create_prints_the_key_last(service: dict, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from api.auth import KeyStore, keys_db_path

    env = {**os.environ, **service["env"]}
    proc = subprocess.run([sys.executable, "-m", "cli", "keys", "create", "carol"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    key = proc.stdout.strip().splitlines()[-1]
    assert key.startswith("osk_") and len(key) > 40
    store = KeyStore(keys_db_path(service["settings"]))
    assert store.lookup(key).name == "carol"
    assert key not in keys_db_path(service["settings"]).read_bytes().decode("latin-1"), "stored hashed only"
    resp = httpx.post(service["url"] + "/v1/search", json={"query": "sleep", "k": 1},
                      headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200


def test_docs_and_redoc_work_offline(service: dict) -> None:
    """Both pages load their scripts and styles from this server (a package's files), never a CDN."""
    import re

    url = service["url"]
    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        html = httpx.get(url + page).text
        refs = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', html)
        assert refs and all(r.startswith("/") for r in refs), (page, refs)
        assert "http" not in " ".join(refs) and "cdn" not in html.lower(), page
        for asset in assets:
            body = httpx.get(f"{url}/docs-assets/{asset}")
            assert body.status_code == 200 and len(body.content) > 100_000, asset
            assert f"/docs-assets/{asset}" in refs


def test_keys_file_is_private(service: dict) -> None:
    import stat

    from api.auth import keys_db_path

    path = keys_db_path(service["settings"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
