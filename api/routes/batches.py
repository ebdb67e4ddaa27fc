"""Batches: POST /v1/batches (JSON or JSONL upload), counts by state, and streamed JSONL results."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, Rt
from api.errors import InvalidRequest, NotFound, RequestTooLarge
from api.jobs import STATES, TERMINAL, new_id
from api.models import BatchCreated, BatchOut, BatchRequest, JobOut, QuestionRequest
from api.routes.jobs import RESPONSES, enqueue, new_job

router = APIRouter(prefix="/v1", tags=["batches"])

_BODY_SCHEMA = {
    "oneOf": [
        {"$ref": "#/components/schemas/BatchRequest"},
        {"type": "array", "minItems": 1, "items": {"anyOf": [{"type": "string", "minLength": 1},
                                                             {"$ref": "#/components/schemas/QuestionRequest"}]}},
    ]
}
_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _BODY_SCHEMA},
            "application/x-ndjson": {"schema": {"type": "string", "description": "One question per line: a JSON "
                                                "string or a QuestionRequest object."}},
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": {"type": "string", "format": "binary"}}}},
        },
    }
}
_ITEMS = TypeAdapter(list[str | QuestionRequest])


def _parse_jsonl(text: str) -> list[Any]:
    items: list[Any] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"line {n} of the JSONL upload is not JSON ({exc.msg})",
                                 hint='each line is a JSON string or {"question": ..., "options": {...}}') from None
    return items


async def _read_batch(request: Request) -> BatchRequest:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if ctype == "multipart/form-data":
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise InvalidRequest("the upload has no 'file' part", hint="send the JSONL file as form field 'file'")
            raw = await upload.read()
            payload: Any = _parse_jsonl(raw.decode("utf-8"))
        elif ctype in ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "text/plain"):
            payload = _parse_jsonl((await request.body()).decode("utf-8"))
        else:
            try:
                payload = json.loads(await request.body())
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"the body is not JSON ({exc.msg})",
                                     hint="send a JSON list of questions, or JSONL as application/x-ndjson") from None
        if isinstance(payload, list):
            return BatchRequest(questions=_ITEMS.validate_python(payload))
        return BatchRequest.model_validate(payload)
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not UTF-8 text", hint="send UTF-8 JSON or JSONL") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidRequest(f"invalid batch: {where or 'body'}: {first.get('msg')}",
                             hint='questions are strings or {"question": ..., "options": {...}}') from None


@router.post("/batches", status_code=202, response_model=BatchCreated, summary="Queue a batch of questions",
             openapi_extra=_OPENAPI, responses={413: {"description": "Body or batch too large."}, **RESPONSES})
async def create_batch(request: Request, rt: Rt, principal: Caller) -> BatchCreated:
    batch = await _read_batch(request)
    svc = rt.settings.service
    if len(batch.questions) > svc.max_batch_questions:
        raise RequestTooLarge(f"the batch has {len(batch.questions)} questions; the limit is {svc.max_batch_questions}",
                              hint="split it into several batches")
    batch_id = new_id("batch")
    jobs = []
    for item in batch.questions:
        q = item if isinstance(item, QuestionRequest) else QuestionRequest(question=item, options=batch.options)
        jobs.append(new_job(rt, q, principal, batch_id))
    await enqueue(rt, jobs, batch_id, principal.owner)
    return BatchCreated(id=batch_id, total=len(jobs), links={
        "self": f"/v1/batches/{batch_id}", "results": f"/v1/batches/{batch_id}/results"})


async def _batch(rt: Any, batch_id: str, principal: Any) -> dict[str, Any]:
    info = await run_in_threadpool(rt.store.batch, batch_id)
    if info is None or not (principal.admin or info.get("owner") == principal.owner):
        raise NotFound(f"no batch {batch_id!r}", hint="batch ids come from POST /v1/batches")
    return info


@router.get("/batches/{batch_id}", response_model=BatchOut, summary="Jobs of a batch by state", responses=RESPONSES)
async def get_batch(batch_id: str, rt: Rt, principal: Caller) -> BatchOut:
    info = await _batch(rt, batch_id, principal)
    jobs = await run_in_threadpool(rt.store.get_many, info["job_ids"])
    counts = dict.fromkeys(STATES, 0)
    for job in jobs:
        if job is not None:
            counts[job.status] += 1
    total = len(info["job_ids"])
    return BatchOut(id=batch_id, total=total, counts=counts, done=sum(counts[s] for s in TERMINAL) == total,
                    created_at=info["created_at"],
                    links={"self": f"/v1/batches/{batch_id}", "results": f"/v1/batches/{batch_id}/results"})


@router.get("/batches/{batch_id}/results", summary="Finished jobs of a batch as JSONL (partial while running)",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}, "description": "One finished job per line."},
                       **RESPONSES})
async def batch_results(batch_id: str, rt: Rt, principal: Caller) -> StreamingResponse:
    info = await _batch(rt, batch_id, principal)
    ids: list[str] = info["job_ids"]

    async def lines() -> AsyncIterator[str]:
        for i in range(0, len(ids), 50):
            for job in await run_in_threadpool(rt.store.get_many, ids[i : i + 50]):
                if job is not None and job.status in TERMINAL:
                    out = JobOut.of(job).model_dump(mode="json", exclude={"links"})
                    yield json.dumps(out, ensure_ascii=False) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")
