"""Request and response bodies of the HTTP API (separate input and output models)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.jobs import Job, JobStatus
from datastore.models import PassageData
from openscholar.options import AnswerOptions
from retriever.config import PipelineName

Options = AnswerOptions  # strict itself (StrictModel): a typo is an error, not ignored


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, description="The search query (at most service.max_question_chars).")
    k: int = Field(10, ge=1, description="Number of hits (at most service.max_search_k).")
    pipeline: PipelineName | None = Field(None, description="Retrieval pipeline (default: settings.retrieval.pipeline).")


class HitOut(PassageData):
    """A ranked passage: the passage schema plus its final score and its score at each stage."""

    score: float
    scores: dict[str, float] = Field(default_factory=dict)


class SearchResponse(BaseModel):
    query: str
    k: int
    hits: list[HitOut]
    took_ms: float


class QuestionRequest(BaseModel):
    """One question for /v1/answer, /v1/jobs and each batch line."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, description="The question (at most service.max_question_chars).")
    options: Options = Field(default_factory=Options, description="Pipeline options.")  # type: ignore[arg-type]


class BatchRequest(BaseModel):
    """A batch as JSON: questions (strings or question objects) and options shared by the strings."""

    model_config = ConfigDict(extra="forbid")

    questions: list[str | QuestionRequest] = Field(min_length=1, description="The questions.")
    options: Options = Field(default_factory=Options,  # type: ignore[arg-type]
                              description="Options for plain-string questions.")


class ErrorInfo(BaseModel):
    error: str
    kind: str
    message: str
    hint: str = ""
    retryable: bool = False


class JobOut(BaseModel):
    """A job as clients see it."""

    id: str
    status: JobStatus
    question: str
    progress: dict[str, Any] = Field(default_factory=dict, description="Last step seen and how many steps so far.")
    batch_id: str | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    retries: int = 0
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = Field(None, description="The Answer (plus 'bibtex') when succeeded.")
    queue_position: int | None = Field(None, description="While queued: 1 = the next job a worker takes.")
    partial: bool = Field(False, description="Succeeded with a partial answer: a step ran out of its time budget.")
    cancel_requested: bool = False
    links: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def of(cls, job: Job, queue_position: int | None = None) -> JobOut:
        return cls(
            id=job.id, status=job.status, question=job.question, progress=job.progress, batch_id=job.batch_id,
            queue_position=queue_position, cancel_requested=job.cancel_requested,
            partial=bool(job.status == "succeeded" and (job.result or {}).get("partial")),
            created_at=job.created_at, updated_at=job.updated_at, started_at=job.started_at,
            finished_at=job.finished_at, attempts=job.attempts, retries=job.retries, error=job.error,
            result=job.result if job.status == "succeeded" else None,
            links={"self": f"/v1/jobs/{job.id}", "events": f"/v1/jobs/{job.id}/events"},
        )


class BatchCreated(BaseModel):
    id: str
    total: int
    job_ids: list[str] = Field(default_factory=list, description="The batch's jobs, in submission order.")
    links: dict[str, str]


class BatchJob(BaseModel):
    """One job of a batch: its id and state (the full job at /v1/jobs/{id})."""

    id: str
    status: str
    error: str | None = Field(None, description="The error message when failed.")


class BatchOut(BaseModel):
    id: str
    total: int
    counts: dict[str, int] = Field(description="Jobs per state: queued, running, succeeded, failed, cancelled.")
    done: bool
    created_at: float
    jobs: list[BatchJob] = Field(default_factory=list, description="Every job of the batch, in submission order.")
    links: dict[str, str]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, dict[str, Any]]
