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
from api.deps import Caller, Rt, Runtime, charge_questions, visible
from api.errors import ApiError, InvalidRequest, NotFound, ServiceUnavailable
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


def new_job(rt: Runtime, body: QuestionRequest, principal: Principal, batch_id: str | None = None,
            where: str = "") -> Job:
    """A job for one question, after the checks a worker would otherwise fail it for (422 here instead).
    ``where`` names the question in a batch ("question 3: ", "line 3: ")."""
    svc = rt.settings.service
    try:
        question = check_text(body.question, svc.max_question_chars, "question")
        opts = body.options  # typed and validated (pipeline names, supplied passages) by AnswerOptions
        if opts.max_tokens is not None and opts.max_tokens > svc.max_answer_tokens:
            raise InvalidRequest(f"options.max_tokens={opts.max_tokens} is above the limit of {svc.max_answer_tokens}",
                                 hint="ask for fewer tokens (service.max_answer_tokens)")
        check_passages(opts.passages)
    except InvalidRequest as exc:
        if where:
            exc.message = f"{where}{exc.message}"
        raise
    return Job(id=new_id("job"), question=question, options=body.options.model_dump(mode="json", exclude_none=True),
               owner=principal.owner, batch_id=batch_id)


def check_passages(passages: list[Any] | None) -> None:
    """An empty list of supplied passages would answer from nothing (each passage is checked by
    AnswerOptions: a non-empty text)."""
    if passages is not None and not passages:
        raise InvalidRequest("options.passages is empty", hint="give at least one passage, or leave passages out")


async def enqueue(rt: Runtime, jobs: list[Job], batch_id: str | None = None, owner: str = "",
                  background: bool = False) -> None:
    """Store the jobs (one transaction), then hand them to the workers: now (a broker failure fails
    them visibly, 503), or for a batch in the background (what fails is retried by the recovery loop)."""
    dispatch_in_s = 60.0 + 0.05 * len(jobs)  # the recovery loop hands them over if this process dies first
    await run_in_threadpool(rt.store.create, jobs, batch_id, owner, dispatch_in_s)
    rt.metrics.jobs_submitted.inc(len(jobs))
    ids = [j.id for j in jobs]
    if background:
        rt.dispatcher.send_later(ids)
        return
    try:
        await run_in_threadpool(rt.dispatcher.send, ids)
    except Exception as exc:
        err = ServiceUnavailable(
            "the job broker cannot be reached, so the job was not queued",
            hint="the broker (Redis) is down or restarting; submit again in a few seconds",
        )
        for job in jobs:
            try:
                await run_in_threadpool(rt.store.update, job.id, status="failed", error=err.to_dict(),
                                        finished_at=time.time())
                await run_in_threadpool(rt.store.mark_dispatched, [job.id])
            except ApiError:
                break
        raise err from exc


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
async def answer(body: QuestionRequest, request: Request, rt: Rt, principal: Caller) -> JSONResponse:
    job = new_job(rt, body, principal)
    charge_questions(rt, principal, 1, request)
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
    out = await job_out(rt, current)
    return JSONResponse(out.model_dump(mode="json"), status_code=202,
                        headers={"Location": out.links["self"], "X-Job-Id": job.id})


_JOB_LINKS = {name: {"operationId": op, "parameters": {"job_id": "$response.body#/id"}}
              for name, op in (("GetJob", "getJob"), ("CancelJob", "cancelJob"), ("JobEvents", "jobEvents"))}


@router.post("/jobs", status_code=202, response_model=JobOut, summary="Queue a question", operation_id="createJob",
             responses={202: {"description": "Queued.", "links": _JOB_LINKS}, **RESPONSES})
async def create_job(body: QuestionRequest, request: Request, rt: Rt, principal: Caller) -> JobOut:
    job = new_job(rt, body, principal)
    charge_questions(rt, principal, 1, request)
    await enqueue(rt, [job])
    return await job_out(rt, job)


async def job_out(rt: Runtime, job: Job) -> JobOut:
    """The job as clients see it, with its place in the queue while it waits."""
    position = await run_in_threadpool(rt.store.queue_position, job.id) if job.status == "queued" else None
    return JobOut.of(job, queue_position=position)


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's state, progress and result", operation_id="getJob",
            responses=RESPONSES)
async def get_job(job_id: str, rt: Rt, principal: Caller) -> JobOut:
    return await job_out(rt, await get_visible(rt, job_id, principal))


@router.delete("/jobs/{job_id}", response_model=JobOut, summary="Cancel a job", operation_id="cancelJob",
               responses=RESPONSES)
async def cancel_job(job_id: str, rt: Rt, principal: Caller) -> JobOut:
    job = await get_visible(rt, job_id, principal)
    if job.status not in TERMINAL:
        # Queued: cancelled now (the worker skips it); running: the worker stops at the next step.
        (after,) = await run_in_threadpool(rt.store.cancel, [job_id])
        if after is not None and after.status == "cancelled":
            await run_in_threadpool(rt.store.record_outcome, "cancelled")
        job = after or job
    return await job_out(rt, job)


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.get("/jobs/{job_id}/events", summary="Server-sent events: each step, then the result", operation_id="jobEvents",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "`step` events then `result`."},
                       **RESPONSES})
async def job_events(job_id: str, request: Request, rt: Rt, principal: Caller,
                     last_event_id: str | None = Header(None, alias="Last-Event-ID")) -> StreamingResponse:
    await get_visible(rt, job_id, principal)
    start = parse_last_event_id(last_event_id)
    limit_s = rt.settings.service.hard_time_limit_s * (rt.settings.service.max_retries + 2) + 60

    async def stream() -> AsyncIterator[str]:
        nonlocal start
        began = last_beat = time.monotonic()
        shown: tuple[Any, ...] = ()
        yield ": stream open\n\n"
        while time.monotonic() - began < limit_s:
            if await request.is_disconnected():
                return
            try:
                events = await run_in_threadpool(rt.store.events, job_id, start)
                job = await run_in_threadpool(rt.store.get, job_id)
                position = (await run_in_threadpool(rt.store.queue_position, job_id)
                            if job is not None and job.status == "queued" else None)
            except ApiError as exc:
                yield sse("error", exc.to_dict())
                return
            consistent = job is not None and not (job.status == "queued" and position is None)  # taken meanwhile
            if consistent and job is not None and job.status not in TERMINAL and (job.status, position) != shown:
                shown = (job.status, position)  # `status` events carry no id: they are not replayed
                yield sse("status", {"status": job.status, "queue_position": position})
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


MAX_EVENT_ID = 1_000_000


def parse_last_event_id(value: str | None) -> int:
    """The first event to send: after ``Last-Event-ID`` (an id this stream sent: 0, 1, 2 ...)."""
    if value is None or not value.strip():
        return 0
    text = value.strip()
    if len(text) > 7 or not text.isdigit() or int(text) >= MAX_EVENT_ID:
        raise InvalidRequest(f"Last-Event-ID must be an event id this stream sent (0 to {MAX_EVENT_ID - 1}), "
                             f"not {text[:20]!r}{'...' if len(text) > 20 else ''}",
                             hint="send the id of the last event received, or no Last-Event-ID to start over")
    return int(text) + 1
