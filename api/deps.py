"""What routes share: the app's runtime objects and the caller (authenticated, rate limited)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from api.auth import Authenticator, Principal
from api.jobs import Job, JobStore
from api.metrics import Metrics
from api.ratelimit import RateLimiter
from openscholar.settings import Settings


@dataclass
class Runtime:
    """Everything an API process holds, built once by ``create_app``."""

    settings: Settings
    engine: Any
    store: JobStore
    auth: Authenticator
    limiter: RateLimiter
    metrics: Metrics


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def caller(request: Request) -> Principal:
    """The authenticated caller, after its rate limit is charged."""
    rt = runtime(request)
    principal = rt.auth(request)
    bucket = principal.key_hash or f"ip:{request.client.host if request.client else '?'}"
    try:
        rt.limiter.check(bucket)
    except Exception:
        rt.metrics.rate_limited.inc()
        raise
    return principal


Rt = Annotated[Runtime, Depends(runtime)]
Caller = Annotated[Principal, Depends(caller)]


def visible(job: Job | None, principal: Principal) -> bool:
    """A job is visible to the key that created it (and to the admin token)."""
    return job is not None and (principal.admin or job.owner == principal.owner)
