"""Answering through a running OpenScholar service, so a run fans out over its Celery workers.

The service (``openscholar serve`` plus ``openscholar worker`` processes on a broker) takes each
question as a job (``POST /v1/jobs`` with the engine's answer options) and any free worker answers
it; this client keeps ``in_flight`` jobs queued and collects results as they finish. eval talks to
the service over HTTP only (it never imports the api package).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from datastore.errors import ErrorKind, ScholarError


class ServiceError(ScholarError):
    kind: ErrorKind = "unavailable"
    retryable = True


class ServiceClient:
    """The jobs API of one deployment (``base_url`` like http://host:8080, bearer ``api_key``)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 60.0,
                 poll_s: float = 0.5) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)
        self.poll_s = poll_s

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        import httpx

        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(f"the service at {self.base_url} is unreachable ({exc.__class__.__name__})",
                               hint="start `openscholar serve` and its workers, or run without --service") from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {"message": resp.text[:200]}
            err = body.get("error", body) if isinstance(body, dict) else {}
            raise ServiceError(f"{method} {path} failed with {resp.status_code}: {err.get('message', body)}",
                               hint=str(err.get("hint", "check the API key and the service logs")),
                               retryable=resp.status_code in (429, 502, 503, 504))
        out: dict[str, Any] = resp.json()
        return out

    def submit(self, question: str, options: dict[str, Any]) -> str:
        return str(self._call("POST", "/v1/jobs", json={"question": question, "options": options})["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def close(self) -> None:
        self.http.close()


def answer_all(client: ServiceClient, items: Sequence[tuple[Any, dict[str, Any]]],
               on_result: Callable[[Any, dict[str, Any] | None, dict[str, Any] | None], None],
               in_flight: int = 16, job_timeout_s: float = 3600.0) -> None:
    """Submit (key, options-with-question) items, at most ``in_flight`` at once; call
    ``on_result(key, answer, error)`` as each job ends (answer: the Answer JSON)."""
    pending = list(items)
    running: dict[str, tuple[Any, float]] = {}
    while pending or running:
        while pending and len(running) < in_flight:
            key, payload = pending.pop(0)
            question = payload.pop("question")
            running[client.submit(question, payload)] = (key, time.monotonic())
        time.sleep(client.poll_s)
        for job_id, (key, started) in list(running.items()):
            job = client.job(job_id)
            if job["status"] == "succeeded":
                del running[job_id]
                on_result(key, job["result"], None)
            elif job["status"] in ("failed", "cancelled"):
                del running[job_id]
                on_result(key, None, job.get("error") or {"message": job["status"]})
            elif time.monotonic() - started > job_timeout_s:
                del running[job_id]
                on_result(key, None, {"message": f"job {job_id} did not finish in {job_timeout_s:.0f}s"})
