"""Per-key rate limits: a token bucket per key in this API process (429 + Retry-After when empty)."""

from __future__ import annotations

import threading
import time

from api.errors import RateLimited


class RateLimiter:
    """``burst`` requests at once, refilled at ``per_minute`` / 60 per second."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from ``key``'s bucket or raise RateLimited with the wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                return
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > 100_000:
                self._buckets.clear()
        raise RateLimited((cost - tokens) / self.rate, self.per_minute)
