"""Prometheus metrics of one serving app (its own registry: two apps in one process, as in tests,
never share or collide), and the ASGI middleware timing every request by its route template."""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

# fine below 25 ms: the latency budget of a recommendation
BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075,
           0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "shoprec_request_seconds", "Request latency by endpoint (route template).",
            ["method", "endpoint", "status"], buckets=BUCKETS, registry=r)
        self.recommendations = Counter(
            "shoprec_recommendations", "Recommendation responses by strategy.", ["strategy"],
            registry=r)
        self.fallbacks = Counter(
            "shoprec_fallbacks", "Recommendations answered from the export, by cause.",
            ["cause"], registry=r)
        self.store_failures = Counter(
            "shoprec_online_store_failures", "Online store calls that failed or ran over "
            "their budget, by cause.", ["cause"], registry=r)
        self.lookup = Histogram(
            "shoprec_online_lookup_seconds", "Online feature lookups that answered.",
            buckets=BUCKETS, registry=r)
        self.events = Counter(
            "shoprec_events", "POST /events outcomes per event (accepted, duplicate, forgotten: "
            "of a user who asked to be forgotten, dropped) and per "
            "call (rejected, stale: accepted but not pushed to the live sequences).",
            ["outcome"], registry=r)
        self.reloads = Counter(
            "shoprec_model_reloads", "Model reload attempts by outcome (swapped, failed).",
            ["outcome"], registry=r)
        self.model = Info("shoprec_model", "The model serving now.", registry=r)
        self.model_loaded = Gauge(
            "shoprec_model_loaded_timestamp_seconds", "When the model serving now was swapped "
            "in (0: none).", registry=r)
        self.breaker_open = Gauge(
            "shoprec_breaker_open", "1 while the online store's circuit breaker skips it.",
            registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class LatencyMiddleware:
    """Time each HTTP request; labelled by the matched route's template (`/items/{item_id}/
    similar`), so ids never become label values."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(scope["method"], endpoint, str(status["code"])).observe(
                time.perf_counter() - t0)
