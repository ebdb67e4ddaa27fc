"""Jobs: POST /v1/answer (wait up to a deadline), POST/GET/DELETE /v1/jobs, and the SSE event stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from api.deps import Caller, Rt, Runtime, visible
from api.errors import ApiError, NotFound, ServiceUnavailable
from api.jobs import TERMINAL, Job, new_id
from api.models import ErrorInfo, JobOut, QuestionRequest
from api.routes.search import check_text

router = APIRouter(prefix="/v1", tags=["jobs"])

POLL_S = 0.1
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorInfo, "description": "No valid API key."},
    422: {"model": ErrorInfo, "description": "Invalid request."},
    429: {"model": ErrorInfo, "description": "Rate limit exceeded (see Retry-After)."},
    503: {"model": ErrorInfo, "description": "Broker, job store or LLM unreachable (retry)."},
}


def new_job(rt: Runtime, body: QuestionRequest, principal: Principal, batch_id: str | None = None) -> Job:
    question = check_text(body.question, rt.settings.service.max_question_chars, "question")
    return Job(id=new_id("job"), question=question, options=body.options.model_dump(mode="json", exclude_none=True),
               owner=principal.owner, batch_id=batch_id)


async def enqueue(rt: Runtime, jobs: list[Job], batch_id: str | None = None, owner: str = "") -> None:
    """Store the jobs, then hand them to the workers; a broker failure fails them visibly (503)."""
    from api.tasks import submit_many

    await run_in_threadpool(rt.store.create, jobs, batch_id, owner)
    try:
        await run_in_threadpool(submit_many, [j.id for j in jobs])
    except Exception as exc:
        err = ServiceUnavailable(
            "the job broker cannot be reached, so the job was not queued",
            hint="the broker (Redis) is down or restarting; submit again in a few seconds",
        )
        for job in jobs:
            try:
                await run_in_threadpool(rt.store.update, job.id, status="failed", error=err.to_dict(),
                                        finished_at=time.time())
            except ApiError:
                break
        raise err from exc
    rt.metrics.jobs_submitted.inc(len(jobs))


async def get_visible(rt: Runtime, job_id: str, principal: Principal) -> Job:
    job = await run_in_threadpool(rt.store.get, job_id)
    if job is None or not visible(job, principal):
        raise NotFound(f"no job {job_id!r}", hint="job ids come from POST /v1/jobs; jobs expire after service.job_ttl_s")
    return job


def job_error(job: Job) -> ApiError:
    """The stored error of a failed (or retrying) job, as an exception the handler maps to a status."""
    info = job.error or {}
    err = ApiError(str(info.get("message", "the job failed")), hint=str(info.get("hint", "")),
                   retryable=bool(info.get("retryable", False)))
    err.kind = info.get("kind", "internal") if info.get("kind") in {"invalid_input", "not_found", "unavailable",
                                                                    "conflict", "too_large", "internal"} else "internal"
    if err.kind == "internal":
        err.status = 502  # the job failed on the worker; the API itself is fine
    err.headers = {"X-Job-Id": job.id}
    return err


@router.post("/answer", summary="Answer a question (waits up to service.answer_deadline_s)",
             responses={200: {"description": "The Answer (plus 'bibtex')."},
                        202: {"model": JobOut, "description": "Still running: poll the job."}, **RESPONSES})
async def answer(body: QuestionRequest, rt: Rt, principal: Caller) -> JSONResponse:
    job = new_job(rt, body, principal)
    await enqueue(rt, [job])
    deadline = time.monotonic() + rt.settings.service.answer_deadline_s
    current = job
    while time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        latest = await run_in_threadpool(rt.store.get, job.id)
        current = latest or current
        if current.status == "succeeded" and current.result is not None:
            return JSONResponse(current.result, headers={"X-Job-Id": job.id})
        if current.status in ("failed", "cancelled"):
            raise job_error(current)
        if current.status == "queued" and current.error and current.error.get("kind") == "unavailable":
            # Retrying after e.g. the LLM endpoint went down: say so now rather than hang.
            raise job_error(current)
    out = JobOut.of(current)
    return JSONResponse(out.model_dump(mode="json"), status_code=202,
                        headers={"Location": out.links["self"], "X-Job-Id": job.id})


@router.post("/jobs", status_code=202, response_model=JobOut, summary="Queue a question", responses=RESPONSES)
async def create_job(body: QuestionRequest, rt: Rt, principal: Caller) -> JobOut:
    job = new_job(rt, body, principal)
    await enqueue(rt, [job])
    return JobOut.of(job)


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's state, progress and result", responses=RESPONSES)
async def get_job(job_id: str, rt: Rt, principal: Caller) -> JobOut:
    return JobOut.of(await get_visible(rt, job_id, principal))


@router.delete("/jobs/{job_id}", response_model=JobOut, summary="Cancel a job", responses=RESPONSES)
async def cancel_job(job_id: str, rt: Rt, principal: Caller) -> JobOut:
    job = await get_visible(rt, job_id, principal)
    if job.status in TERMINAL:
        return JobOut.of(job)
    fields: dict[str, Any] = {"cancel_requested": True}
    if job.status == "queued":
        fields.update(status="cancelled", finished_at=time.time())  # the worker will skip it
    await run_in_threadpool(rt.store.update, job_id, **fields)
    return JobOut.of(await get_visible(rt, job_id, principal))


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.get("/jobs/{job_id}/events", summary="Server-sent events: each step, then the result",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "`step` events then `result`."},
                       **RESPONSES})
async def job_events(job_id: str, request: Request, rt: Rt, principal: Caller,
                     last_event_id: str | None = Header(None, alias="Last-Event-ID")) -> StreamingResponse:
    await get_visible(rt, job_id, principal)
    try:
        start = int(last_event_id) + 1 if last_event_id is not None else 0
    except ValueError:
        start = 0
    limit_s = rt.settings.service.hard_time_limit_s * (rt.settings.service.max_retries + 2) + 60

    async def stream() -> AsyncIterator[str]:
        nonlocal start
        began = last_beat = time.monotonic()
        yield ": stream open\n\n"
        while time.monotonic() - began < limit_s:
            if await request.is_disconnected():
                return
            try:
                events = await run_in_threadpool(rt.store.events, job_id, start)
                job = await run_in_threadpool(rt.store.get, job_id)
            except ApiError as exc:
                yield sse("error", exc.to_dict())
                return
            for event in events:
                yield sse("step", event, start)
                start += 1
            if job is None:
                yield sse("error", {"kind": "not_found", "message": "the job expired"})
                return
            if job.status in TERMINAL and not events:
                yield sse("result", JobOut.of(job).model_dump(mode="json"))
                return
            if time.monotonic() - last_beat > 10:
                last_beat = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(0.2)
        yield sse("error", {"kind": "unavailable", "message": "the event stream timed out; poll the job"})

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
