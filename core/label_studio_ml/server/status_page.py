"""The status page a browser gets at ``/``: is the backend working, what is it doing, what went wrong.

Everything on it comes from what the JSON endpoints already serve (``/health``, ``/versions``,
``/jobs``, ``/metrics``, through the same functions), plus two short in-memory records kept while
the app runs: the last WARNING-or-worse log records (redacted) and a /predict traffic series.
Templates live in ``status/``; the page's script re-renders the live part every few seconds by
fetching ``/?fragment=1``, so the server renders HTML in one place only.
"""

from __future__ import annotations

import inspect
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..config import Settings
from ..engine.runtime import ModelRuntime
from ..errors import LabelConfigError, Unauthorized
from ..model import LabelStudioMLBase
from ..results.label_config import parse_config
from .logs import RecentErrors
from .metrics import Metrics

TEMPLATES = Path(__file__).parent / "status"
REFRESH_SECONDS = 2
MAX_PROJECTS = 25
MAX_JOBS = 20
CSP = (
    "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class Sources(Protocol):
    """What the page reads: the app's handlers (``MLBackendApp``) provide each of these once."""

    runtime: ModelRuntime
    settings: Settings

    async def health_report(self) -> tuple[dict[str, Any], int]: ...
    def version_list(self, projects: list[str] | None) -> list[str]: ...
    def job_report(self, project: str) -> dict[str, Any]: ...
    def current_metrics(self) -> Metrics: ...


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def wants_html(accept: str) -> bool:
    """Whether an Accept header prefers HTML to JSON. Browsers name ``text/html`` (q=1) above ``*/*``;
    LS 1.23.2 and curl send ``*/*``, scripts ``application/json`` or nothing: they get JSON."""
    ranges: dict[str, float] = {}
    for item in accept.split(","):
        media, *params = item.split(";")
        media = media.strip().lower()
        if media:
            ranges[media] = max(ranges.get(media, 0.0), _quality(params))
    json_q = next((ranges[m] for m in ("application/json", "application/*", "*/*") if m in ranges), 0.0)
    return ranges.get("text/html", 0.0) > json_q


def config_summary(xml: str | None) -> list[dict[str, Any]]:
    """A label config's control tags, each with the object tags it annotates and its label count."""
    try:
        controls = parse_config(xml)
    except LabelConfigError as exc:
        return [{"error": exc.reason}]
    return [
        {
            "name": name,
            "type": info["type"],
            "to": info["to_name"],
            "objects": sorted({i["type"] for i in info["inputs"]}),
            "labels": len(info["labels"]),
        }
        for name, info in controls.items()
    ]


_JOB_FIELDS = {
    "id",
    "kind",
    "project",
    "state",
    "progress",
    "message",
    "error",
    "version",
    "created_at",
    "started_at",
    "ended_at",
    "event",
    "events",
    "pid",
    "owner",
}


def job_view(record: dict[str, Any], redact: Callable[[str], str] = str) -> dict[str, Any]:
    """Any job record (training, or another kind with a ``kind`` field) as the fields the page shows;
    other plain fields are kept as extras. Texts pass through ``redact`` (errors may quote secrets)."""
    progress = record.get("progress")
    error = record.get("error")
    return {
        "id": record.get("id", "?"),
        "kind": record.get("kind") or "train",
        "project": record.get("project", ""),
        "state": record.get("state", "unknown"),
        "progress": min(1.0, max(0.0, float(progress))) if isinstance(progress, (int, float)) else None,
        "message": redact(str(record.get("message") or "")),
        "error": redact(str(error)) if error else None,
        "version": record.get("version"),
        "created_at": record.get("created_at"),
        "started_at": record.get("started_at"),
        "ended_at": record.get("ended_at"),
        "event": record.get("event"),
        "events": record.get("events") or 1,
        "extra": {
            k: redact(v) if isinstance(v, str) else v
            for k, v in record.items()
            if k not in _JOB_FIELDS and isinstance(v, (str, int, float)) and v != ""
        },
    }


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl() if "@" in parts.netloc else url


def _source_file(cls: type) -> str:
    try:
        return inspect.getfile(cls)
    except (TypeError, OSError):
        return cls.__module__


class Traffic:
    """/predict throughput and mean latency over the last ``points`` intervals, from the metrics."""

    def __init__(self, metrics: Metrics, interval: float = 2.0, points: int = 150) -> None:
        self.metrics = metrics
        self.interval = interval
        self.points = points
        self.samples: deque[tuple[float, float, float, float]] = deque(maxlen=points + 1)

    def sample(self, now: float | None = None) -> None:
        get = self.metrics.registry.get_sample_value
        predict = {"path": "/predict"}
        self.samples.append(
            (
                time.time() if now is None else now,
                get("lsml_request_seconds_count", predict) or 0.0,
                get("lsml_request_seconds_sum", predict) or 0.0,
                get("lsml_predictions_total") or 0.0,
            )
        )

    def series(self) -> list[dict[str, Any]]:
        """Per interval: its end time, predictions per second, mean /predict latency (None: no request)."""
        out = []
        for (t0, n0, s0, p0), (t1, n1, s1, p1) in zip(self.samples, list(self.samples)[1:]):
            span = max(t1 - t0, 1e-9)
            out.append(
                {"time": t1, "rate": (p1 - p0) / span, "mean_ms": 1000 * (s1 - s0) / (n1 - n0) if n1 > n0 else None}
            )
        return out

    def chart(self, width: int = 600, height: int = 240) -> dict[str, Any]:
        """SVG geometry: a bar per interval for throughput, a line (split at idle gaps) for latency."""
        series = self.series()
        max_rate = max((p["rate"] for p in series), default=0.0)
        max_ms = max((p["mean_ms"] for p in series if p["mean_ms"] is not None), default=0.0)
        step = width / max(len(series), 30)  # a young series fills the chart instead of a sliver of it
        left = width - step * len(series)
        bars, lines, line, dots = [], [], [], []
        for i, point in enumerate(series):
            x = left + i * step
            if point["rate"] > 0:
                h = height * point["rate"] / max_rate
                bars.append(
                    {"x": round(x, 1), "y": round(height - h, 1), "w": round(max(step - 1, 1), 1), "h": round(h, 1)}
                )
            if point["mean_ms"] is None:
                if line:
                    lines.append(" ".join(line))
                line = []
            else:
                y = height - (height - 4) * point["mean_ms"] / max_ms if max_ms else height
                line.append(f"{x + step / 2:.1f},{y:.1f}")
                dots.append({"x": round(x + step / 2, 1), "y": round(y, 1)})
        if line:
            lines.append(" ".join(line))
        return {
            "width": width,
            "height": height,
            "bars": bars,
            "lines": lines,
            "dots": dots,
            "max_rate": max_rate,
            "max_ms": max_ms,
            "span_s": self.interval * max(len(series), 30),
            "interval": self.interval,
            "intervals": len(series),
            "latest": series[-1] if series else None,
        }

    async def run(self) -> None:
        while True:
            self.sample()
            await anyio.sleep(self.interval)


@lru_cache(maxsize=1)
def _templates() -> Any:
    import jinja2  # imported on the first page view: the protocol endpoints never need it

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=_ago, duration=_duration, clock=_clock, ms=_ms, count=_count)
    return env


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"


def _ago(timestamp: float | None, now: float) -> str:
    return "–" if not timestamp else f"{_duration(max(0.0, now - timestamp))} ago"


def _clock(timestamp: float | None) -> str:
    return "" if not timestamp else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds == float("inf"):
        return "> 100 s"
    return f"{1000 * seconds:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _count(value: float) -> str:
    return f"{int(value):,}"


class StatusPage:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.errors = RecentErrors(sources.settings.secrets)
        self.traffic = Traffic(sources.current_metrics())

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """While the app runs: collect WARNING+ records from every logger, sample the traffic."""
        root = logging.getLogger()
        root.addHandler(self.errors)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self.traffic.run)
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            root.removeHandler(self.errors)

    async def respond(self, request: Request) -> HTMLResponse:
        if not request.scope.get("state", {}).get("authenticated", True):
            raise Unauthorized("the status page needs the backend's basic-auth credentials")
        health = await self.sources.health_report()
        data = await anyio.to_thread.run_sync(self.snapshot, health)
        nonce = secrets.token_urlsafe(16)
        template = "live.html" if "fragment" in request.query_params else "page.html"
        html = _templates().get_template(template).render(nonce=nonce, refresh_seconds=REFRESH_SECONDS, **data)
        return HTMLResponse(
            html,
            headers={"Cache-Control": "no-store", "Vary": "Accept", "Content-Security-Policy": CSP.format(nonce=nonce)},
        )

    def _credited(self, errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The model module's records credited to the service: a second import of a model file gets a
        generated module name (loader.py), which means nothing to a reader."""
        model_class = self.sources.runtime.model_class
        module, service = model_class.__module__, model_class.version_prefix()
        return [
            {**e, "logger": service + e["logger"][len(module) :]}
            if e["logger"] == module or e["logger"].startswith(module + ".")
            else e
            for e in errors
        ]

    def snapshot(self, health: tuple[dict[str, Any], int]) -> dict[str, Any]:
        """The page's data; reads the store, so it runs in a worker thread."""
        runtime, settings = self.sources.runtime, self.sources.settings
        redact = self.errors.redaction.redact
        names = sorted(runtime.projects(), key=lambda p: (p.isdigit(), int(p) if p.isdigit() else 0, p), reverse=True)
        projects, jobs = [], []
        for project in names[:MAX_PROJECTS]:
            report = self.sources.job_report(project)
            projects.append(
                {
                    "id": project,
                    "model_version": report["model_version"],
                    "versions": self.sources.version_list([project]),
                    "controls": config_summary(runtime.store.get(project, "label_config")),
                }
            )
            jobs += [job_view(record, redact) for record in report["jobs"]]
        jobs.sort(key=lambda job: job.get("created_at") or 0, reverse=True)
        body, status_code = health
        if "reason" in body:
            body = {**body, "reason": redact(body["reason"])}
        return {
            "now": time.time(),
            "model_class": runtime.model_class.__name__,
            "service_name": runtime.model_class.version_prefix(),
            "model_file": _source_file(runtime.model_class),
            "pid": os.getpid(),
            "health": body,
            "health_code": status_code,
            "state": runtime.state,
            "load_seconds": runtime.load_seconds,
            "started_at": runtime.started_at,
            "settings": {
                "threads": settings.threads,
                "basic_auth": settings.basic_auth_enabled,
                "redis": bool(settings.redis_url),
                "train_on_annotation": settings.train_on_annotation,
                "trains": runtime.model_class.fit is not LabelStudioMLBase.fit,
                "label_studio_url": _without_userinfo(settings.label_studio_url),
                "api_key": bool(settings.label_studio_api_key),
                "keep_versions": settings.keep_versions,
            },
            "projects": projects,
            "project_count": len(names),
            "versions": self.sources.version_list(None),
            "jobs": jobs[:MAX_JOBS],
            "job_count": len(jobs),
            "errors": self._credited(self.errors.recent()),
            "metrics": self.sources.current_metrics().summary(),
            "chart": self.traffic.chart(),
            "stats": dict(runtime.stats),
        }
