"""Prometheus metrics for one app (a registry per app, so tests and several apps do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("lsml_requests_total", "HTTP requests", ["path", "status"],
                                registry=self.registry)
        self.latency = Histogram("lsml_request_seconds", "HTTP request latency", ["path"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 100))
        self.predictions = Counter("lsml_predictions_total", "predictions returned (one per task)",
                                   registry=self.registry)
        self.dropped = Counter("lsml_dropped_regions_total", "regions dropped by validation",
                               registry=self.registry)
        self.failed_tasks = Counter("lsml_failed_tasks_total", "tasks answered empty after an error",
                                    registry=self.registry)
        self.fit_runs = Counter("lsml_fit_runs_total", "training jobs finished", ["state"],
                                registry=self.registry)
        self.jobs_active = Gauge("lsml_training_jobs_active", "training jobs running or queued",
                                 registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
