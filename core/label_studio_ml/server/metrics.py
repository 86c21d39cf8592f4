"""Prometheus metrics for one app (a registry per app, so tests and several apps do not collide)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("lsml_requests_total", "HTTP requests", ["path", "status"], registry=self.registry)
        self.latency = Histogram(
            "lsml_request_seconds",
            "HTTP request latency",
            ["path"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 100),
        )
        self.predictions = Counter(
            "lsml_predictions_total", "predictions returned (one per task)", registry=self.registry
        )
        self.dropped = Counter("lsml_dropped_regions_total", "regions dropped by validation", registry=self.registry)
        self.failed_tasks = Counter(
            "lsml_failed_tasks_total", "tasks answered empty after an error", registry=self.registry
        )
        self.fit_runs = Counter("lsml_fit_runs_total", "training jobs finished", ["state"], registry=self.registry)
        self.jobs_active = Gauge("lsml_training_jobs_active", "training jobs running or queued", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def summary(self) -> dict[str, Any]:
        """The same samples as numbers: per path the requests, errors (4xx/5xx), mean and p95 latency
        (p95 as the histogram bucket it falls in), and the prediction counters."""
        paths: dict[str, dict[str, Any]] = {}
        buckets: dict[str, list[tuple[float, float]]] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                path = sample.labels.get("path")
                if path is None:
                    continue
                row = paths.setdefault(path, {"requests": 0.0, "errors": 0.0, "seconds": 0.0, "timed": 0.0})
                if sample.name == "lsml_requests_total":
                    row["requests"] += sample.value
                    row["errors"] += sample.value if int(sample.labels["status"]) >= 400 else 0.0
                elif sample.name == "lsml_request_seconds_sum":
                    row["seconds"] = sample.value
                elif sample.name == "lsml_request_seconds_count":
                    row["timed"] = sample.value
                elif sample.name == "lsml_request_seconds_bucket":
                    buckets.setdefault(path, []).append((float(sample.labels["le"]), sample.value))
        for path, row in paths.items():
            timed = row.pop("timed")
            row["mean_seconds"] = row.pop("seconds") / timed if timed else None
            row["p95_seconds"] = next(
                (le for le, count in sorted(buckets.get(path, [])) if timed and count >= 0.95 * timed), None
            )

        def value(name: str) -> float:
            return self.registry.get_sample_value(name) or 0.0

        return {
            "paths": dict(sorted(paths.items())),
            "requests": sum(r["requests"] for r in paths.values()),
            "predictions": value("lsml_predictions_total"),
            "dropped_regions": value("lsml_dropped_regions_total"),
            "failed_tasks": value("lsml_failed_tasks_total"),
            "jobs_active": value("lsml_training_jobs_active"),
        }
