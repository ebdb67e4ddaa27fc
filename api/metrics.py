"""Prometheus metrics of one API process (its own registry, so several apps can live in one process).

HTTP metrics are counted here. Job metrics (outcomes, queue depth, running jobs, per-step durations)
are counted by the workers in the job store and read from it at scrape time (``StoreCollector``),
so every API process reports the same figures for the whole deployment.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from api.jobs import STEP_BUCKETS, JobStore


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "openscholar_http_requests_total", "HTTP requests by route and status.", ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "openscholar_http_request_seconds", "HTTP request latency by route.", ["route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.jobs_submitted = Counter(
            "openscholar_jobs_submitted_total", "Jobs queued (single and batch).", registry=self.registry
        )
        self.rate_limited = Counter(
            "openscholar_rate_limited_total", "Requests refused by the per-key rate limit.", registry=self.registry
        )
        self.search_seconds = Histogram(
            "openscholar_search_seconds", "Retrieval time of /v1/search in the API process.", registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def watch_store(self, store: JobStore) -> None:
        self.registry.register(StoreCollector(store))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): counts requests and latency without buffering streams."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)


class StoreCollector:
    """Job outcomes, queue depth and per-step duration histograms, read from the job store."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def describe(self) -> list[Any]:
        return []  # figures are read at scrape time; nothing to declare up front

    def collect(self) -> Any:
        try:
            stats = self.store.stats()
        except Exception:  # noqa: BLE001 - the store is down: /readyz says so; HTTP metrics still render
            return
        outcomes = CounterMetricFamily("openscholar_jobs_finished", "Jobs finished, by outcome.", labels=["status"])
        for status in ("succeeded", "failed", "cancelled"):
            outcomes.add_metric([status], stats["outcomes"].get(status, 0))
        yield outcomes
        yield GaugeMetricFamily("openscholar_queue_depth", "Jobs queued and not yet running.", value=stats["queued"])
        yield GaugeMetricFamily("openscholar_jobs_running", "Jobs running now.", value=stats["running"])
        steps = HistogramMetricFamily("openscholar_step_seconds", "Duration of each answer-pipeline step.",
                                      labels=["step"])
        for step, entry in sorted(stats["steps"].items()):
            cumulative, buckets = 0, []
            for le in STEP_BUCKETS:
                cumulative += entry["buckets"].get(f"{le:g}", 0)
                buckets.append((f"{le:g}", cumulative))
            buckets.append(("+Inf", entry["count"]))
            steps.add_metric([step], buckets, sum_value=entry["sum"])
        yield steps
