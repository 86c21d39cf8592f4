"""The Starlette app that speaks the LS ML backend protocol for one model class."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from ..engine.protocol import PredictRequest, SetupRequest, WebhookEvent, loads, parse_project
from ..engine.runtime import ModelRuntime, settle_heap
from ..engine.scheduling import WorkerThreads
from ..errors import InvalidInput, InvalidShape, MLBackendError, PayloadTooLarge, StateUnavailable, Unauthorized
from ..model import LabelStudioMLBase
from ..preannotate.server_jobs import PreannotateJobs
from ..state.storage import Store
from .logs import RequestLog
from .metrics import CONTENT_TYPE, Metrics
from .openapi import openapi_spec
from .spool import WebhookSpool
from .status_page import StatusPage, wants_html

logger = logging.getLogger(__name__)

_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class JSONResponse(StarletteJSONResponse):
    """orjson-rendered: a 100-prediction reply encodes ~20x faster; numpy values and int keys work."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_ORJSON_OPTIONS)


OPEN_PATHS = {"/", "/health", "/openapi.json"}
REALM = 'Basic realm="label-studio-ml", charset="UTF-8"'


def error_response(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": status, "error": reason}, status_code=status, headers=headers)


def _credentials_ok(header: str, user: str, password: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    given_user, sep, given_pass = decoded.partition(":")
    if not sep:
        return False
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    pass_ok = hmac.compare_digest(given_pass.encode(), password.encode())
    return user_ok & pass_ok  # both compared: no short-circuit on the user name


class ProtocolMiddleware:
    """Basic auth, metrics and timing for every HTTP request (pure ASGI: no per-request tasks)."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}  # labelled metric children, looked up once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.settings.root_path and path.startswith(self.settings.root_path):
            path = path[len(self.settings.root_path) :] or "/"
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        authenticated = True
        if self.settings.basic_auth_enabled:
            header = ""
            for key, value in scope["headers"]:
                if key == b"authorization":
                    header = value.decode("latin-1")
            authenticated = _credentials_ok(header, self.settings.basic_auth_user, self.settings.basic_auth_pass)
        scope.setdefault("state", {})["authenticated"] = authenticated
        try:
            if not authenticated and path not in OPEN_PATHS and path != "/webhook":
                response = error_response(401, "authentication required", {"WWW-Authenticate": REALM})
                await response(scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            label = path if path in KNOWN_PATHS else "other"
            series = self._series.get((label, status[0]))
            if series is None:
                series = self._series[(label, status[0])] = (
                    self.metrics.requests.labels(label, str(status[0])),
                    self.metrics.latency.labels(label),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - started)


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, refused past ``limit`` bytes (declared or sent). Read from the ASGI
    messages and raw headers directly: Starlette's Headers and stream generator cost a tenth of a
    1-task /predict's CPU in the app."""
    for key, declared in request.scope["headers"]:
        if key == b"content-length":
            if declared.isdigit() and (len(declared) > 18 or int(declared) > limit):  # bytes: ASCII digits only
                raise PayloadTooLarge(f"request body is larger than {limit} bytes (MAX_REQUEST_BYTES)")
            break
    chunks, size = [], 0
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes (MAX_REQUEST_BYTES)")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return loads(chunks[0] if len(chunks) == 1 else b"".join(chunks))


class MLBackendApp:
    """Route handlers bound to one runtime."""

    def __init__(self, runtime: ModelRuntime, metrics: Metrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.settings = runtime.settings
        self.predict_threads = WorkerThreads(self.settings.threads, "predict", max_lent=4 * self.settings.threads)
        runtime.fetcher.io_wait = self.predict_threads.lending
        self.request_log = RequestLog(logger)
        self.status_page = StatusPage(self)
        self.preannotate = PreannotateJobs(runtime)
        # with Redis, webhooks arriving while it is away wait on disk (LS does not send them again)
        self.spool = WebhookSpool(self.settings.model_dir / ".webhook-spool") if self.settings.redis_url else None

    async def health_report(self) -> tuple[dict[str, Any], int]:
        """``/health``'s body and status code (also shown on the status page)."""
        body = self.runtime.health()
        if self.runtime.state == "ready" and self.runtime.queue is not None:
            if not await anyio.to_thread.run_sync(self.runtime.queue.ping):
                # still 200: LS checks /health before each /predict, and the loaded model can answer those
                body["status"] = "DEGRADED"
                body["reason"] = (
                    "Redis is unreachable: predictions use the last state read, /setup changes fail, "
                    "webhooks are kept on disk and trained on when it returns"
                )
                return body, 200
        if self.runtime.state != "ready":
            body["reason"] = self.runtime.error or "model is loading"
            return body, 503
        return body, 200

    async def health(self, request: Request) -> Response:
        body, status = await self.health_report()
        return JSONResponse(body, status_code=status)

    async def index(self, request: Request) -> Response:
        """``/``: the status page for a browser, ``/health``'s JSON for everyone else (LS, probes, curl)."""
        if wants_html(request.headers.get("accept", "")):
            return await self.status_page.respond(request)
        return await self.health(request)

    async def setup(self, request: Request) -> Response:
        parsed = SetupRequest.parse(await read_json(request, self.settings.max_request_bytes))
        parsed.authenticated = self.settings.basic_auth_enabled and request.scope.get("state", {}).get(
            "authenticated", False
        )
        version = await anyio.to_thread.run_sync(self.runtime.setup, parsed)
        return JSONResponse({"model_version": version})

    async def predict(self, request: Request) -> Response:
        parsed = PredictRequest.parse(await read_json(request, self.settings.max_request_bytes))
        self.runtime.require_ready()
        started = time.perf_counter()
        stats = self.runtime.stats
        dropped_before, failed_before = stats["dropped_regions"], stats["failed_tasks"]
        try:
            model = self.runtime.inline_instance(parsed)  # see scheduling.py
            if model is not None:
                results = self.runtime.predict(parsed, inline=model)
            else:
                results = await self.predict_threads.run(self.runtime.predict, parsed)
        finally:  # a request that failed as a whole counts its failed tasks too
            if failed := stats["failed_tasks"] - failed_before:
                self.metrics.failed_tasks.inc(failed)
        self.metrics.predictions.inc(len(results))
        if dropped := stats["dropped_regions"] - dropped_before:
            self.metrics.dropped.inc(dropped)
        if failed:  # a failed task's error names the exception type only: its message stays in the log
            for item in results:
                if item.get("error"):
                    item["error"] = str(item["error"]).split(":", 1)[0] + " (see the backend log)"
        self.request_log.info(
            "predicted %d task(s) for project %s in %.1f ms%s",
            len(results),
            parsed.project,
            1000 * (time.perf_counter() - started),
            " (interactive)" if parsed.context else "",
        )
        return JSONResponse({"results": results})

    async def webhook(self, request: Request) -> Response:
        body = await read_json(request, self.settings.max_request_bytes)
        event = WebhookEvent.parse(body)
        authenticated = request.scope.get("state", {}).get("authenticated", True)
        if not authenticated:
            if event.action == "START_TRAINING" and not self._webhook_secret_ok(request):
                raise Unauthorized("START_TRAINING needs the backend's basic-auth credentials")
            if self.settings.webhook_secret and not self._webhook_secret_ok(request):
                raise Unauthorized("webhook secret missing or wrong (X-Webhook-Secret)")
        elif (
            self.settings.webhook_secret
            and not self.settings.basic_auth_enabled
            and event.action != "START_TRAINING"
            and not self._webhook_secret_ok(request)
        ):
            # without basic auth every event is unauthenticated: WEBHOOK_SECRET must still apply
            raise Unauthorized("webhook secret missing or wrong (X-Webhook-Secret)")
        try:
            reply = await anyio.to_thread.run_sync(self.accept_event, event, authenticated)
        except StateUnavailable:
            if self.spool is None:
                raise
            await anyio.to_thread.run_sync(self.spool.keep, event.data, authenticated)
            reply = {"status": "accepted", "reason": "Redis is unreachable: kept on disk, trained on when it returns"}
        self.metrics.jobs_active.set(self.runtime.trainer.active_count())
        # 201 when a job was scheduled, as upstream answers for training events; 200 for an ignored one
        return JSONResponse(reply, status_code=201 if reply.get("status") == "ok" else 200)

    def accept_event(self, event: WebhookEvent, authenticated: bool) -> dict[str, Any]:
        """Schedule training for a webhook (also for one replayed from the spool)."""
        if event.project is not None and not authenticated:
            # unauthenticated events (WEBHOOK_SECRET, START_TRAINING included) only for projects set up here
            if not self.runtime.store.get(event.project, "label_config"):
                return {"status": "ignored", "reason": "unknown project"}
        return self.runtime.webhook(event)

    def replay_event(self, body: dict[str, Any], authenticated: bool) -> None:
        self.accept_event(WebhookEvent.parse(body), authenticated)

    def _webhook_secret_ok(self, request: Request) -> bool:
        secret = self.settings.webhook_secret
        given = request.headers.get("x-webhook-secret", "")
        return bool(secret) and hmac.compare_digest(given.encode(), secret.encode())

    async def train(self, request: Request) -> Response:
        """Legacy ``/train`` (old LS): the same path as START_TRAINING."""
        body = await read_json(request, self.settings.max_request_bytes)
        if not isinstance(body, dict):
            raise InvalidShape("request body must be a JSON object")
        event = WebhookEvent.parse({**body, "action": "START_TRAINING", "project": body.get("project")})
        if event.project is None:
            raise InvalidShape("/train needs a 'project'")
        if body.get("label_config") and isinstance(body["label_config"], str):
            event.label_config = body["label_config"]
        reply = await anyio.to_thread.run_sync(self.runtime.webhook, event)
        return JSONResponse(reply)

    async def versions(self, request: Request) -> Response:
        project = parse_project(request.query_params.get("project"))
        projects = [project] if project else None
        versions = await anyio.to_thread.run_sync(self.version_list, projects)
        return JSONResponse({"versions": versions, "model_class": self.runtime.model_class.__name__})

    def version_list(self, projects: list[str] | None) -> list[str]:
        """Versions of the given projects (all known ones when None), each active one before its history."""
        found: list[str] = []
        for project in self.runtime.projects() if projects is None else projects:
            for version in [self.runtime.versions.active(project)] + self.runtime.versions.history(project):
                if version not in found:
                    found.append(version)
        return found or [self.runtime.versions.initial]

    async def jobs_endpoint(self, request: Request) -> Response:
        """One route for both methods: a 405 (an OPTIONS, say) then lists both in Allow."""
        return await (self.start_job(request) if request.method == "POST" else self.jobs(request))

    async def jobs(self, request: Request) -> Response:
        given = request.query_params.get("project")
        project = parse_project(given)
        if project is None:
            raise InvalidShape("GET /jobs needs ?project=<id>")
        report = await anyio.to_thread.run_sync(self.job_report, project)
        return JSONResponse({"project": given, **report})

    async def start_job(self, request: Request) -> Response:
        """``POST /jobs`` ``{"project": ID, "kind": "preannotate", "batch_size": N}``: pre-annotate the
        project in the background (202 with the job id; the project's running job if it has one)."""
        body = await read_json(request, self.settings.max_request_bytes)
        if not isinstance(body, dict):
            raise InvalidInput('POST /jobs needs a JSON object: {"project": ID, "kind": "preannotate"}')
        kind = body.get("kind", "preannotate")
        if kind != "preannotate":
            raise InvalidInput(f"unknown job kind {kind!r}: POST /jobs starts 'preannotate' (training starts from LS)")
        try:
            project = parse_project(body.get("project"))
        except MLBackendError as exc:
            raise InvalidInput(exc.reason) from None
        if project is None or not project.isdigit():
            raise InvalidInput("POST /jobs needs 'project': the LS project id")
        batch_size = body.get("batch_size")
        if batch_size is not None and (
            not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= 10_000
        ):
            raise InvalidInput("'batch_size' must be an integer from 1 to 10000")
        record, started = await anyio.to_thread.run_sync(self.preannotate.start, project, batch_size)
        return JSONResponse(
            {
                "job": record["id"],
                "kind": "preannotate",
                "project": project,
                "state": record.get("state"),
                "status": "started" if started else "already running",
            },
            status_code=202,
        )

    def job_report(self, project: str) -> dict[str, Any]:
        """A project's active version and job records, newest first."""
        return {"model_version": self.runtime.versions.active(project), "jobs": self.runtime.trainer.jobs(project)}

    def current_metrics(self) -> Metrics:
        self.metrics.jobs_active.set(self.runtime.trainer.active_count())
        return self.metrics

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.current_metrics().render(), media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_spec(self.runtime.model_class.__name__))


KNOWN_PATHS = {
    "/",
    "/health",
    "/setup",
    "/predict",
    "/webhook",
    "/train",
    "/versions",
    "/metrics",
    "/jobs",
    "/openapi.json",
}


async def _ml_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MLBackendError)
    headers = {"WWW-Authenticate": REALM} if exc.status_code == 401 else None
    if exc.status_code >= 500:
        logger.error("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.reason)
    else:
        logger.info("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.reason)
    return error_response(exc.status_code, exc.reason, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error; see the server log")


def create_app(
    model_class: type[LabelStudioMLBase],
    settings: Settings | None = None,
    store: Store | None = None,
    background_load: bool = True,
    serving_process: bool = False,
) -> Starlette:
    """Build the app. Resources load at start-up: in a background thread (``/health`` is 503 until
    done) or, with ``background_load=False``, before the app accepts requests. ``serving_process``:
    the app is what this process serves (``label-studio-ml start``, ``_wsgi.py``), so once loaded the
    heap is settled for the garbage collector (runtime.settle_heap); not for apps built in tests."""
    settings = settings or Settings.from_env()
    runtime = ModelRuntime(model_class, settings, store)
    if settings.redis_url:
        from ..engine.queue import RedisTrainingQueue

        runtime.queue = RedisTrainingQueue(settings, model_class)
    metrics = Metrics()
    runtime.trainer.on_finish = lambda job: metrics.fit_runs.labels(job.state).inc()
    handlers = MLBackendApp(runtime, metrics)

    def load() -> None:
        runtime.load()
        if serving_process:
            settle_heap()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with handlers.status_page.running():  # from before the load: its errors are on the page
            if background_load:
                threading.Thread(target=load, name="model-load", daemon=True).start()
            else:
                await anyio.to_thread.run_sync(load)
            stop = threading.Event()
            if handlers.spool is not None:
                spool, queue = handlers.spool, runtime.queue
                threading.Thread(
                    target=spool.run, args=(handlers.replay_event, queue.ping, stop), name="webhook-replay", daemon=True
                ).start()
            try:
                yield
            finally:
                stop.set()
                handlers.predict_threads.stop()

    routes = [
        Route("/predict", handlers.predict, methods=["POST"]),  # first: routes are matched in order
        Route("/", handlers.index, methods=["GET"]),
        Route("/health", handlers.health, methods=["GET"]),
        Route("/setup", handlers.setup, methods=["POST"]),
        Route("/webhook", handlers.webhook, methods=["POST"]),
        Route("/train", handlers.train, methods=["POST"]),
        Route("/versions", handlers.versions, methods=["GET"]),
        Route("/jobs", handlers.jobs_endpoint, methods=["GET", "POST"]),
        Route("/metrics", handlers.metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", handlers.openapi, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            MLBackendError: _ml_error,
            HTTPException: _http_error,
            Exception: _unexpected,
            StateUnavailable: _ml_error,
        },
    )
    app.add_middleware(ProtocolMiddleware, settings=settings, metrics=metrics)  # type: ignore[arg-type]
    app.state.runtime = runtime
    app.state.metrics = metrics
    return app
