"""Batches: POST /v1/batches (JSON or JSONL upload), their jobs and states, cancel, streamed JSONL results.

A batch is validated whole before anything is queued (a bad question is a 422 that names it: its
1-based line in JSONL, its 1-based position in JSON), stored in one transaction, and handed to the
broker in the background, so 1,000 questions are accepted in well under the 2 s target. Each question
takes one token of the key's question rate limit.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, Rt, charge_questions
from api.errors import InvalidRequest, NotFound, RequestTooLarge
from api.jobs import STATES, TERMINAL, new_id
from api.models import (
    BatchCreated,
    BatchJob,
    BatchOut,
    BatchRequest,
    JobOut,
    Options,
    QuestionRequest,
)
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
def add_schemas(spec: dict[str, Any]) -> dict[str, Any]:
    """Put BatchRequest (referenced by the hand-written body schema above) into the spec's components."""
    schema = BatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components["BatchRequest"] = schema
    return spec


def _parse_jsonl(text: str) -> list[tuple[str, Any]]:
    """(where, item) per non-empty line; ``where`` names the 1-based line for error messages."""
    items: list[tuple[str, Any]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((f"line {n}: ", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"line {n} of the JSONL upload is not JSON ({exc.msg})",
                                 hint='each line is a JSON string or {"question": ..., "options": {...}}') from None
    return items


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where + ': ' if where else ''}{first.get('msg')}"


async def _read_batch(request: Request) -> tuple[list[tuple[str, Any]], Options]:
    """The batch's items (each with where it came from) and the options shared by plain strings."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if ctype == "multipart/form-data":
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise InvalidRequest("the upload has no 'file' part", hint="send the JSONL file as form field 'file'")
            return _parse_jsonl((await upload.read()).decode("utf-8")), Options()
        if ctype in ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "text/plain"):
            return _parse_jsonl((await request.body()).decode("utf-8")), Options()
        try:
            payload: Any = json.loads(await request.body())
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"the body is not JSON ({exc.msg})",
                                 hint="send a JSON list of questions, or JSONL as application/x-ndjson") from None
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not UTF-8 text", hint="send UTF-8 JSON or JSONL") from None
    if isinstance(payload, list):
        return [(f"question {i}: ", q) for i, q in enumerate(payload, start=1)], Options()
    if not isinstance(payload, dict):
        raise InvalidRequest("the body must be a JSON list of questions or an object with 'questions'",
                             hint='e.g. ["q1", "q2"] or {"questions": ["q1"], "options": {"feedback": false}}')
    extra = set(payload) - {"questions", "options"}
    if extra:
        raise InvalidRequest(f"unknown field(s) in the batch: {', '.join(sorted(extra))}",
                             hint="a batch object has 'questions' and optional 'options'")
    questions = payload.get("questions")
    if not isinstance(questions, list):
        raise InvalidRequest("'questions' must be a list of questions", hint='e.g. {"questions": ["q1", "q2"]}')
    try:
        options = Options.model_validate(payload.get("options") or {})
    except ValidationError as exc:
        raise InvalidRequest(f"invalid batch options: {_validation_message(exc)}", hint="see /docs") from None
    return [(f"question {i}: ", q) for i, q in enumerate(questions, start=1)], options


def _question(where: str, item: Any, options: Options) -> QuestionRequest:
    if isinstance(item, str):
        return QuestionRequest.model_construct(question=item, options=options)
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where}a question is a string or an object, not {type(item).__name__}",
                             hint='e.g. "Does X cause Y?" or {"question": "Does X cause Y?", "options": {...}}')
    try:
        return QuestionRequest.model_validate(item)
    except ValidationError as exc:
        raise InvalidRequest(f"{where}{_validation_message(exc)}",
                             hint='questions are strings or {"question": ..., "options": {...}}') from None


_BATCH_LINKS = {
    "GetBatch": {"operationId": "getBatch", "parameters": {"batch_id": "$response.body#/id"}},
    "CancelBatch": {"operationId": "cancelBatch", "parameters": {"batch_id": "$response.body#/id"}},
    "BatchResults": {"operationId": "batchResults", "parameters": {"batch_id": "$response.body#/id"}},
    "GetFirstJob": {"operationId": "getJob", "parameters": {"job_id": "$response.body#/job_ids/0"}},
}


@router.post("/batches", status_code=202, response_model=BatchCreated, summary="Queue a batch of questions",
             operation_id="createBatch", openapi_extra=_OPENAPI,
             responses={202: {"description": "Queued: the batch and its job ids.", "links": _BATCH_LINKS},
                        413: {"description": "Body or batch too large."}, **RESPONSES})
async def create_batch(request: Request, rt: Rt, principal: Caller) -> BatchCreated:
    items, options = await _read_batch(request)
    svc = rt.settings.service
    if not items:
        raise InvalidRequest("the batch has no questions", hint="send at least one question")
    if len(items) > svc.max_batch_questions:
        raise RequestTooLarge(f"the batch has {len(items)} questions; the limit is {svc.max_batch_questions}",
                              hint="split it into several batches")
    batch_id = new_id("batch")
    jobs = [new_job(rt, _question(where, item, options), principal, batch_id, where=where) for where, item in items]
    charge_questions(rt, principal, len(jobs), request)
    await enqueue(rt, jobs, batch_id, principal.owner, background=len(jobs) > 1)
    return BatchCreated(id=batch_id, total=len(jobs), job_ids=[j.id for j in jobs], links=_links(batch_id))


def _links(batch_id: str) -> dict[str, str]:
    return {"self": f"/v1/batches/{batch_id}", "results": f"/v1/batches/{batch_id}/results"}


async def _batch(rt: Any, batch_id: str, principal: Any) -> dict[str, Any]:
    info = await run_in_threadpool(rt.store.batch, batch_id)
    if info is None or not (principal.admin or info.get("owner") == principal.owner):
        raise NotFound(f"no batch {batch_id!r}", hint="batch ids come from POST /v1/batches")
    return info


@router.get("/batches/{batch_id}", response_model=BatchOut, summary="A batch: its jobs and their states",
            operation_id="getBatch", responses=RESPONSES)
async def get_batch(batch_id: str, rt: Rt, principal: Caller) -> BatchOut:
    info = await _batch(rt, batch_id, principal)
    return _batch_out(batch_id, info, await run_in_threadpool(rt.store.get_many, info["job_ids"]))


def _batch_out(batch_id: str, info: dict[str, Any], jobs: list[Any]) -> BatchOut:
    counts = dict.fromkeys(STATES, 0)
    listed = []
    for jid, job in zip(info["job_ids"], jobs, strict=True):
        status = job.status if job is not None else "expired"
        if status in counts:
            counts[status] += 1
        error = (job.error or {}).get("message") if job is not None and job.status == "failed" else None
        listed.append(BatchJob(id=jid, status=status, error=error))
    total = len(info["job_ids"])
    return BatchOut(id=batch_id, total=total, counts=counts, done=sum(counts[s] for s in TERMINAL) == total,
                    created_at=info["created_at"], jobs=listed, links=_links(batch_id))


@router.delete("/batches/{batch_id}", response_model=BatchOut, summary="Cancel what has not finished",
               operation_id="cancelBatch", responses=RESPONSES)
async def cancel_batch(batch_id: str, rt: Rt, principal: Caller) -> BatchOut:
    """Queued jobs are cancelled at once; running ones stop at their next step (then read `cancelled`)."""
    info = await _batch(rt, batch_id, principal)
    before = await run_in_threadpool(rt.store.get_many, info["job_ids"])
    open_ids = [j.id for j in before if j is not None and j.status not in TERMINAL]
    after = await run_in_threadpool(rt.store.cancel, open_ids) if open_ids else []
    newly = sum(1 for j in after if j is not None and j.status == "cancelled")
    for _ in range(newly):
        await run_in_threadpool(rt.store.record_outcome, "cancelled")
    return _batch_out(batch_id, info, await run_in_threadpool(rt.store.get_many, info["job_ids"]))


@router.get("/batches/{batch_id}/results", summary="Finished jobs of a batch as JSONL (partial while running)",
            operation_id="batchResults",
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
