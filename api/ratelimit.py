"""Rate limits: a token bucket per key (or client address) in this API process (429 + Retry-After).

Three buckets per caller (``api/deps.py``): requests per key, questions per key (a batch of n
questions takes n tokens), and requests per client address for callers without a valid key.
"""

from __future__ import annotations

import threading
import time

from api.errors import RateLimited


class RateLimiter:
    """``burst`` requests at once, refilled at ``per_minute`` / 60 per second."""

    def __init__(self, per_minute: float, burst: int, what: str = "this key may send", unit: str = "requests") -> None:
        self.per_minute, self.what, self.unit = per_minute, what, unit
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
        raise RateLimited((cost - tokens) / self.rate, self.per_minute, self.what, self.unit)
