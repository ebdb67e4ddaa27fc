"""The FastAPI app: ``create_app(settings)`` builds one API process (``openscholar serve`` runs it).

/v1 routes need `Authorization: Bearer KEY`; /healthz, /readyz, /metrics, /docs, /redoc and the web
page at / do not. Search runs in this process; answers run on Celery workers. Each API process also
runs the recovery loop (``api/recovery.py``) that takes back jobs whose worker died.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from api import celery_app
from api.auth import Authenticator
from api.deps import Runtime
from api.docs import install_docs
from api.errors import install_error_handler
from api.limits import BodySizeLimit
from api.metrics import Metrics, MetricsMiddleware
from api.ratelimit import RateLimiter
from api.recovery import Dispatcher, Recovery
from api.routes import batches, health, jobs, search
from openscholar.settings import Settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def create_app(settings: Settings, *, engine: object | None = None, warm: bool = True) -> FastAPI:
    """One API process: Celery client and job store from settings, the Engine for search."""
    from openscholar.engine import Engine

    svc = settings.service
    celery_app.configure(settings)
    store = celery_app.store()
    metrics = Metrics()
    dispatcher = Dispatcher(store)
    runtime = Runtime(
        settings=settings,
        engine=engine or Engine.from_settings(settings),
        store=store,
        auth=Authenticator(settings),
        limiter=RateLimiter(svc.rate_limit_per_minute, svc.rate_limit_burst),
        questions=RateLimiter(svc.question_rate_per_minute, svc.question_burst, unit="questions"),
        anonymous=RateLimiter(svc.anon_rate_limit_per_minute, svc.anon_rate_limit_burst,
                              what="a client address without a valid key may send"),
        metrics=metrics,
        dispatcher=dispatcher,
    )
    metrics.watch_store(store)
    recovery = Recovery(store, dispatcher, interval_s=svc.recovery_interval_s, max_retries=svc.max_retries,
                        lease_s=svc.job_lease_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm:
            try:  # open the datastore and load the query encoder before the first search
                await run_in_threadpool(runtime.engine.search, "warm up", 1)
            except Exception as exc:  # noqa: BLE001 - /readyz reports it; the process still serves health
                log.warning("warm-up search failed: %s", exc)
        recovery.start()
        try:
            yield
        finally:
            recovery.stop()
            dispatcher.stop()

    app = FastAPI(
        title="OpenScholar",
        version="1",
        summary="Scientific question answering over the literature with checked citations.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.recovery = recovery
    install_error_handler(app)
    install_docs(app)
    app.include_router(search.router)
    app.include_router(jobs.router)
    app.include_router(batches.router)
    app.include_router(health.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    build_spec = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = batches.add_schemas(build_spec())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics)
    app.add_middleware(BodySizeLimit, max_bytes=svc.max_request_bytes)
    if svc.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=svc.cors_origins, allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"], max_age=600,
        )
    return app
