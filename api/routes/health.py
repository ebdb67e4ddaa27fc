"""/healthz (alive), /readyz (datastore, job store, broker, LLM, a live worker), /metrics (Prometheus)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.deps import Rt, Runtime
from api.models import Health, Readiness

router = APIRouter(tags=["health"])


def _check(fn: Any) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        detail = fn()
        return {"ok": True, "detail": detail, "ms": round((time.perf_counter() - start) * 1000, 1)}
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure as "not ready"
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        return {"ok": False, "detail": str(message)[:300], "ms": round((time.perf_counter() - start) * 1000, 1)}


def _datastore(rt: Runtime) -> str:
    return f"open ({len(rt.engine.datastore)} passages)"


def _workers(rt: Runtime) -> str:
    """Ready only while some worker process has said, within worker_stale_s, that it can take jobs."""
    bound = rt.settings.service.worker_stale_s
    beats = rt.store.workers()
    alive = [w for w in beats if w["age_s"] <= bound]
    if alive:
        return f"{len(alive)} worker process(es) alive (last heartbeat {alive[0]['age_s']:.0f} s ago)"
    if beats:
        last = beats[0]
        raise RuntimeError(f"no worker has sent a heartbeat in the last {bound:g} s (the last one, from "
                           f"{last['worker']}, was {last['age_s']:.0f} s ago): the workers are down or stuck; "
                           "see the worker log or `openscholar serve`'s log")
    raise RuntimeError("no worker has sent a heartbeat yet: start `openscholar worker` (an embedded worker sends "
                       "its first once its models are loaded)")


def _store(rt: Runtime) -> str:
    rt.store.ping()
    return "reachable"


def _broker(rt: Runtime) -> str:
    from api.celery_app import celery

    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
        return conn.as_uri()


def _llm(rt: Runtime) -> str:
    cfg = rt.settings.llm
    if cfg.backend != "openai":
        return f"{cfg.backend} (in the worker process)"
    import httpx

    headers = {}
    if cfg.api_key.get_secret_value():
        headers["Authorization"] = f"Bearer {cfg.api_key.get_secret_value()}"
    resp = httpx.get(cfg.base_url.rstrip("/") + "/models", timeout=3, headers=headers)
    if resp.status_code >= 500:
        raise ConnectionError(f"the LLM endpoint {cfg.base_url} answered {resp.status_code}")
    return f"{cfg.base_url} reachable"


def readiness(rt: Runtime) -> dict[str, dict[str, Any]]:
    return {
        "datastore": _check(lambda: _datastore(rt)),
        "job_store": _check(lambda: _store(rt)),
        "broker": _check(lambda: _broker(rt)),
        "llm": _check(lambda: _llm(rt)),
        "workers": _check(lambda: _workers(rt)),
    }


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, summary="Ready: datastore open, store, broker and LLM reachable, a worker alive",
            responses={503: {"model": Readiness, "description": "Not ready; see the failing check."}})
async def readyz(rt: Rt) -> JSONResponse:
    checks = await run_in_threadpool(readiness, rt)
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse(Readiness(ready=ready, checks=checks).model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(rt: Rt) -> Response:
    return Response(rt.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
