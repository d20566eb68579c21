"""Prometheus metrics of one replica: requests and latency per route and per stage, errors,
refused tokens, the model version served, the prediction and event logs' health.
``GET /metrics`` renders them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("recsys_requests", "HTTP requests", ["route", "status"], registry=r)
        self.latency = Histogram(
            "recsys_request_latency_seconds",
            "Request latency",
            ["route"],
            buckets=BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "recsys_stage_latency_seconds",
            "Latency of each serving stage as the ingress sees it (handle hop included)",
            ["stage"],
            buckets=BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "recsys_errors", "Requests that failed", ["route", "kind"], registry=r
        )
        self.model = Gauge(
            "recsys_model_info", "The model version served (1)", ["version"], registry=r
        )
        self.cold_start = Counter("recsys_cold_start", "Cold-start answers", registry=r)
        self.log_state = Gauge(
            "recsys_prediction_log_records", "Prediction log records", ["state"], registry=r
        )
        self.log_ok = Gauge(
            "recsys_prediction_log_healthy", "0 when the last write failed", registry=r
        )
        self.auth_failures = Counter(
            "recsys_auth_failures",
            "Requests refused with 401 (no, a malformed or a wrong bearer token)",
            ["route", "reason"],
            registry=r,
        )
        self.event_log_ok = Gauge(
            "recsys_event_log_healthy",
            "0 when the last append to the event log failed (events answered 503)",
            registry=r,
        )
        self.event_log_ok.set(1)
        self.shadow = Counter(
            "recsys_shadow_requests",
            "A shadow experiment's mirrored requests: answered, dropped (too many in flight), "
            "failed or timeout",
            ["outcome"],
            registry=r,
        )
        self.event_log_errors = Counter(
            "recsys_event_log_errors",
            "Events refused because the log could not keep them",
            registry=r,
        )

    def set_version(self, version: str | None) -> None:
        self.model.clear()
        if version:
            self.model.labels(version=version).set(1)

    def render(self, log_stats: dict | None) -> bytes:
        if log_stats is not None:
            for state in ("written", "dropped", "errors", "queued"):
                self.log_state.labels(state=state).set(log_stats[state])
            self.log_ok.set(1 if log_stats["healthy"] else 0)
        return generate_latest(self.registry)


_PROCESS: Telemetry | None = None


def for_this_process() -> Telemetry:
    """The replica's metrics (one Ingress replica per process): what the routes, the error
    handlers and the counting middleware all write to."""
    global _PROCESS
    if _PROCESS is None:
        _PROCESS = Telemetry()
    return _PROCESS
