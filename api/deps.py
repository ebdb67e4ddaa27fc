"""What routes share: the app's runtime objects and the caller (authenticated, rate limited)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from api.auth import Authenticator, Principal
from api.errors import RequestTooLarge, Unauthorized
from api.jobs import Job, JobStore
from api.metrics import Metrics
from api.ratelimit import RateLimiter
from api.recovery import Dispatcher
from openscholar.settings import Settings


@dataclass
class Runtime:
    """Everything an API process holds, built once by ``create_app``."""

    settings: Settings
    engine: Any
    store: JobStore
    auth: Authenticator
    limiter: RateLimiter
    questions: RateLimiter
    anonymous: RateLimiter
    metrics: Metrics
    dispatcher: Dispatcher


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def client_address(request: Request) -> str:
    return f"ip:{request.client.host if request.client else '?'}"


def _charge(rt: Runtime, limiter: RateLimiter, bucket: str, cost: float = 1.0) -> None:
    try:
        limiter.check(bucket, cost)
    except Exception:
        rt.metrics.rate_limited.inc()
        raise


def caller(request: Request) -> Principal:
    """The authenticated caller, after its rate limit is charged. A request without a valid key is
    charged to its client address first, so floods of bad or missing keys get 429, not endless 401s."""
    rt = runtime(request)
    try:
        principal = rt.auth(request)
    except Unauthorized:
        _charge(rt, rt.anonymous, client_address(request))
        raise
    if principal.key_hash:
        _charge(rt, rt.limiter, principal.key_hash)
    else:  # auth_required is off: callers are told apart by address
        _charge(rt, rt.anonymous, client_address(request))
    return principal


def charge_questions(rt: Runtime, principal: Principal, n: int, request: Request) -> None:
    """Take ``n`` question tokens: rate limits count questions, not requests."""
    burst = int(rt.questions.burst)
    if n > burst:
        raise RequestTooLarge(f"{n} questions at once is more than the {burst} a key may queue at once",
                              hint="split them into smaller batches (service.question_burst)")
    _charge(rt, rt.questions, principal.key_hash or client_address(request), float(n))


Rt = Annotated[Runtime, Depends(runtime)]
Caller = Annotated[Principal, Depends(caller)]


def visible(job: Job | None, principal: Principal) -> bool:
    """A job is visible to the key that created it (and to the admin token)."""
    return job is not None and (principal.admin or job.owner == principal.owner)
