"""POST /v1/search: ranked passages, served in the API process (no worker round trip)."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, Rt
from api.errors import InvalidRequest
from api.models import SearchRequest, SearchResponse

router = APIRouter(prefix="/v1", tags=["search"])


def check_text(text: str, limit: int, what: str) -> str:
    text = text.strip()
    if not text:
        raise InvalidRequest(f"the {what} is empty", hint=f"send a non-empty {what}")
    if len(text) > limit:
        raise InvalidRequest(
            f"the {what} is {len(text)} characters long; the limit is {limit}",
            hint=f"shorten the {what} (service.max_question_chars)",
        )
    return text


@router.post("/search", response_model=SearchResponse, summary="Search the datastore")
async def search(body: SearchRequest, rt: Rt, _: Caller) -> JSONResponse:
    svc = rt.settings.service
    query = check_text(body.query, svc.max_question_chars, "query")
    if body.k > svc.max_search_k:
        raise InvalidRequest(f"k={body.k} is above the limit of {svc.max_search_k}", hint="ask for fewer hits")
    start = time.perf_counter()
    hits = await run_in_threadpool(rt.engine.search, query, body.k, body.pipeline)
    took = time.perf_counter() - start
    rt.metrics.search_seconds.observe(took)
    # Hit.to_dict() already has SearchResponse's shape: skip a second validation on the hot path.
    content = {"query": query, "k": body.k, "hits": [h.to_dict() for h in hits], "took_ms": round(took * 1000, 3)}
    return JSONResponse(content)
