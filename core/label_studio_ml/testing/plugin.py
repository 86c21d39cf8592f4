"""Test kit for services: a pytest plugin with an app client fixture, recorded LS requests, and a
conformance check every service runs.

Registered as a pytest plugin by the package (entry point ``pytest11``); imports stay light so that
loading the plugin costs nothing for suites that do not use it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from ..config import Settings
from ..model import LabelStudioMLBase
from ..results.label_config import LabelConfig
from ..results.regions import RegionValidator

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

FIXTURES = Path(__file__).parent / "fixtures"
_Server = TypeVar("_Server", bound="LocalHTTPServer")


def recorded_requests(name: str = "ls-1.23.2-text-choices.jsonl", path: str | None = None) -> list[dict[str, Any]]:
    """Requests a real LS sent to a backend, one dict each (``method``, ``path``, ``headers``, ``body``)."""
    target = FIXTURES / name if path is None else Path(path) / name
    return [json.loads(line) for line in target.read_text().splitlines() if line.strip()]


def recorded(path: str, name: str = "ls-1.23.2-text-choices.jsonl") -> list[dict[str, Any]]:
    return [r for r in recorded_requests(name) if r["path"] == path]


@contextmanager
def model_client(model_class: type[LabelStudioMLBase], model_dir: Path, **settings: Any) -> Iterator[Any]:
    """A Starlette TestClient for ``model_class``; resources loaded before the first request."""
    from starlette.testclient import TestClient

    from ..server.app import create_app

    app = create_app(model_class, Settings.from_dict({"model_dir": model_dir, **settings}), background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.runtime = app.state.runtime  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make_client(ModelClass, **settings)`` -> TestClient, closed after the test."""
    stack: list[Any] = []

    def factory(model_class: type[LabelStudioMLBase], **settings: Any) -> Any:
        ctx = model_client(model_class, settings.pop("model_dir", tmp_path / "model_dir"), **settings)
        client = ctx.__enter__()
        stack.append(ctx)
        return client

    yield factory
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


def assert_conformant(
    client: Any,
    label_config: str,
    tasks: list[dict[str, Any]],
    context: dict[str, Any] | None = None,
    project: str = "1.1700000000",
    expect_regions: bool | None = None,
) -> list[dict[str, Any]]:
    """Drive ``/health``, ``/setup`` and ``/predict`` as LS does and check the protocol's promises.

    Returns the predictions so a test can assert on content too.
    """
    health = client.get("/health")
    assert health.status_code == 200, f"/health answered {health.status_code}: {health.text}"
    assert health.json()["status"] == "UP"
    setup = client.post(
        "/setup",
        json={"project": project, "schema": label_config, "hostname": "http://localhost:8080", "extra_params": None},
    )
    assert setup.status_code == 200, setup.text
    version = setup.json()["model_version"]
    assert isinstance(version, str) and version
    dropped_before = client.runtime.stats["dropped_regions"]
    reply = client.post(
        "/predict",
        json={
            "tasks": tasks,
            "project": project,
            "label_config": label_config,
            "params": {"login": None, "password": None, "context": context},
        },
    )
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == len(tasks), "one prediction per task, in order"
    validator = RegionValidator(LabelConfig(label_config))
    for task, prediction in zip(tasks, results):
        assert set(prediction) >= {"result", "score", "model_version"}
        assert prediction["model_version"] == version
        kept, dropped = validator.validate(prediction["result"], task)
        assert not dropped, dropped
    assert client.runtime.stats["dropped_regions"] == dropped_before, "the model emitted invalid regions"
    if expect_regions is not None:
        assert any(p["result"] for p in results) == expect_regions
    return results


def wait_for_version(client: Any, project: str, label_config: str, old: str, timeout: float = 60.0) -> str:
    """Poll ``/setup`` as LS does until the project's model version differs from ``old`` (a training
    published); fails with the project's jobs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = client.post("/setup", json={"project": project, "schema": label_config}).json()["model_version"]
        if version != old:
            return str(version)
        time.sleep(0.05)
    raise AssertionError(f"no new version after {timeout} s: {client.get(f'/jobs?project={project}').json()}")


@pytest.fixture
def ls_requests() -> Callable[..., list[dict[str, Any]]]:
    return recorded_requests


FAKE_LS_TOKEN = "legacy-token-0123456789"
FAKE_PROJECT_CONFIG = """<View><Text name="text" value="$text"/><Choices name="label" toName="text">
<Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""


class LocalHTTPServer:
    """A real HTTP server on a free loopback port (``url``), serving ``handler`` from a thread while
    the ``with`` block runs: the base of the stand-ins for the hosts a backend calls."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # a short poll: shutdown() returns at once
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self: _Server) -> _Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeLabelStudio(LocalHTTPServer):
    """A real HTTP server on loopback that answers the LS 1.23.2 endpoints a backend calls: uploads,
    export, PAT refresh and presign (303 to ``redirect_to``), and for bulk pre-annotation one project's
    detail and model versions, task list (keyset query with the versions column, or filtered as LS does
    by "versions do not contain"), prediction import and single prediction.
    Records every request it gets (``requests``); failures can be injected per endpoint kind."""

    def __init__(
        self,
        legacy_token: str = FAKE_LS_TOKEN,
        pat: str | None = None,
        files: dict[str, bytes] | None = None,
        tasks: dict[int, list[dict[str, Any]]] | None = None,
        redirect_to: str = "",
        project: int = 7,
        texts: list[str] | None = None,
        label_config: str = FAKE_PROJECT_CONFIG,
    ) -> None:
        import base64 as b64
        import threading
        from collections import defaultdict
        from http.server import BaseHTTPRequestHandler
        from urllib.parse import parse_qs, urlsplit

        def seg(obj: dict[str, Any]) -> str:
            return b64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

        self.legacy_token = legacy_token
        header = seg({"alg": "HS256", "typ": "JWT"})
        self.pat = pat or f"{header}.{seg({'token_type': 'refresh', 'exp': 4102444800})}.sig"
        self.access = f"{header}.{seg({'token_type': 'access', 'exp': 4102444800})}.sig2"
        self.files = files or {}
        self.tasks = tasks or {}  # project -> what its export answers
        self.redirect_to = redirect_to
        self.requests: list[dict[str, Any]] = []  # method, path, headers, kind, query, body
        self.fail_status: int | None = None  # every GET answers this status
        # the project bulk pre-annotation reads and writes
        self.project = project
        self.label_config = label_config
        self.project_tasks: dict[int, dict[str, Any]] = {}
        self.predictions: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.lock = threading.Lock()
        # endpoint kind ("project", "tasks", "import", "prediction") -> statuses answered to its next calls
        self.fail_next: dict[str, list[int]] = defaultdict(list)
        self.store_then_fail: list[int] = []  # import: store the predictions, then answer this status
        self.down = False  # every authorized call answers 503
        self.down_after: dict[str, int] = {}  # endpoint kind -> calls answered before it answers 503 only
        self.reject_label: str | None = None  # import silently drops predictions with this label (LS's check)
        self.delay_s: dict[str, float] = {}  # endpoint kind -> seconds each of its calls takes
        self.in_flight: Counter[str] = Counter()  # endpoint kind -> its calls being served now
        # (kind, kind) of two calls served at the same time, the later one first: which calls overlapped
        self.together: set[tuple[str, str]] = set()
        for n, text in enumerate(texts or []):
            self.add_task(100 + n, text)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(
                self,
                status: int,
                body: bytes = b"",
                ctype: str = "application/json",
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _authorized(self) -> bool:
                auth = self.headers.get("Authorization", "")
                return auth in (f"Token {fake.legacy_token}", f"Bearer {fake.access}")

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                kind = fake.kind(method, parts.path)
                with fake.lock:
                    fake.requests.append(
                        {"method": method, "path": self.path, "headers": dict(self.headers), "kind": kind}
                        | {"query": query, "body": body, "at": time.monotonic()}
                    )
                    fake.together |= {(kind, other) for other, calls in fake.in_flight.items() if calls}
                    fake.in_flight[kind] += 1
                try:
                    time.sleep(fake.delay_s.get(kind, 0.0))
                    self._answer(method, parts, query, body, kind)
                finally:
                    with fake.lock:
                        fake.in_flight[kind] -= 1

            def _answer(self, method: str, parts: Any, query: dict[str, str], body: Any, kind: str) -> None:
                with fake.lock:
                    injected = fake.fail_next[kind].pop(0) if fake.fail_next[kind] else None
                    if kind in fake.down_after and fake.count(kind) > fake.down_after[kind]:
                        injected = 503
                if method == "POST" and parts.path == "/api/token/refresh/":
                    if (body or {}).get("refresh") == fake.pat:
                        self._reply(200, json.dumps({"access": fake.access}).encode())
                    else:
                        self._reply(401, b'{"detail": "invalid"}')
                    return
                if method == "GET" and fake.fail_status:
                    self._reply(fake.fail_status, b'{"detail": "failure"}')
                    return
                if method == "GET" and parts.path.startswith("/public/") and parts.path in fake.files:
                    self._reply(200, fake.files[parts.path], "application/octet-stream")
                    return
                if not self._authorized():
                    self._reply(401, b'{"detail": "Authentication credentials were not provided."}')
                    return
                if fake.down or injected:
                    self._reply(injected or 503, b'{"detail": "injected failure"}')
                    return
                if method == "GET" and parts.path in fake.files:
                    self._reply(200, fake.files[parts.path], "application/octet-stream")
                elif kind == "export":
                    project = int(parts.path.split("/")[3])
                    self._reply(200, json.dumps(fake.tasks.get(project, [])).encode())
                elif method == "GET" and parts.path.startswith("/tasks/") and parts.path.endswith("/presign/"):
                    fileuri = query["fileuri"]
                    uri = b64.urlsafe_b64decode(fileuri + "=" * (-len(fileuri) % 4)).decode()
                    target = fake.redirect_to + "/public/" + uri.split("://", 1)[1].split("/", 1)[1]
                    self._reply(303, b"", headers={"Location": target})
                elif method == "GET" and parts.path == "/api/current-user/whoami":
                    self._reply(200, b'{"id": 1}')
                else:
                    status, reply = fake.answer(kind, parts.path, query, body)
                    self._reply(status, json.dumps(reply).encode())

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        super().__init__(Handler)

    # --- the bulk pre-annotation project -------------------------------------------------------
    def add_task(self, task_id: int, text: str, versions: tuple[str, ...] = ()) -> None:
        self.project_tasks[task_id] = {"id": task_id, "data": {"text": text}, "project": self.project}
        for version in versions:
            self.predictions[task_id].append({"result": [], "score": None, "model_version": version})

    def versions_of(self, task_id: int) -> list[str]:
        with self.lock:
            return [p["model_version"] for p in self.predictions.get(task_id, [])]

    def count(self, kind: str) -> int:
        return sum(1 for r in self.requests if r["kind"] == kind)

    @staticmethod
    def kind(method: str, path: str) -> str:
        if path.startswith("/api/projects/") and path.endswith("/import/predictions"):
            return "import"
        if path.startswith("/api/projects/") and path.rstrip("/").endswith("/export"):
            return "export"
        if path.startswith("/api/projects/"):
            return "project"
        if path == "/api/tasks/":
            return "tasks"
        if path == "/api/predictions/" and method == "POST":
            return "prediction"
        return "other"

    def answer(self, kind: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if kind == "project":
            if int(path.strip("/").split("/")[2]) != self.project:
                return 404, {"detail": "Not found."}
            if path.endswith("/model-versions/"):
                with self.lock:
                    return 200, dict(Counter(p["model_version"] for ps in self.predictions.values() for p in ps))
            return 200, {"id": self.project, "title": "fake", "label_config": self.label_config}
        if kind == "tasks":
            return self.task_list(query)
        if kind == "import":
            return self.import_predictions(int(path.split("/")[3]), body)
        if kind == "prediction":
            if body.get("task") not in self.project_tasks:
                return 400, {"detail": "Validation error", "validation_errors": {"task": ["Invalid pk"]}}
            with self.lock:
                self.predictions[body["task"]].append(body)
            return 201, {"id": 1, **body}
        return 404, {"detail": "not found"}

    def task_list(self, query: dict[str, str]) -> tuple[int, Any]:
        if int(query.get("project", 0)) != self.project:
            return 404, {"detail": "Not found."}
        spec = json.loads(query.get("query") or "{}")
        after, excluded = 0, []
        for item in spec.get("filters", {}).get("items", []):
            if item["filter"] == "filter:tasks:id" and item["operator"] == "greater":
                after = int(item["value"])
            if item["filter"].endswith(":predictions_model_versions") and item["operator"] == "not_contains":
                excluded = [str(v).lower() for v in item["value"]]  # LS: LIKE '%v%', case-blind on SQLite

        def shown(task_id: int) -> bool:
            versions = [p["model_version"].lower() for p in self.predictions.get(task_id, [])]
            return not any(v in version for v in excluded for version in versions)

        included = (spec.get("selectedItems") or {}).get("included")
        with self.lock:
            ids = sorted(
                i for i in self.project_tasks if i > after and (included is None or i in included) and shown(i)
            )
            size = int(query.get("page_size", 100))
            page = []
            for task_id in ids[:size]:
                versions = sorted({p["model_version"] for p in self.predictions.get(task_id, [])})
                task = {**self.project_tasks[task_id], "predictions_model_versions": ",".join(versions)}
                if query.get("fields") == "all":
                    task["predictions"] = [dict(p) for p in self.predictions.get(task_id, [])]
                if query.get("include"):  # LS's sparse fields (drf-flex-fields): only the named ones
                    wanted = query["include"].split(",")
                    task = {key: value for key, value in task.items() if key in wanted}
                page.append(task)
        return 200, {"total": len(ids), "tasks": page}

    def import_predictions(self, project: int, items: list[dict[str, Any]]) -> tuple[int, Any]:
        if project != self.project:
            return 404, {"detail": "Not found."}
        with self.lock:
            missing = [p["task"] for p in items if p["task"] not in self.project_tasks]
            if missing:
                return 400, {"detail": "Validation error", "validation_errors": {"non_field_errors": [str(missing)]}}
            created = 0
            for item in items:
                labels = [c for r in item.get("result") or [] for c in r.get("value", {}).get("choices", [])]
                if self.reject_label is not None and self.reject_label in labels:
                    continue
                self.predictions[item["task"]].append(item)
                created += 1
            if self.store_then_fail:
                return self.store_then_fail.pop(0), {"detail": "stored, then failed"}
        return 201, {"created": created}

    def auth_headers_seen(self, path_prefix: str) -> list[str]:
        return [r["headers"].get("Authorization", "") for r in self.requests if r["path"].startswith(path_prefix)]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[str]:
    """A real ``redis-server`` (Debian package) on a free loopback port; yields its URL."""
    with running_redis(tmp_path) as url:
        yield url


def start_redis(data_dir: Path) -> tuple[Any, str]:
    """``redis-server`` on a free loopback port, no persistence, answering PING: (its process, its URL).
    The caller stops it (``stop_process``); ``running_redis`` does both."""
    import shutil
    import socket
    import subprocess
    import time

    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
        + ["--save", "", "--appendonly", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    stop_process(proc)
    raise RuntimeError("redis-server did not start")


@contextmanager
def running_redis(data_dir: Path) -> Iterator[str]:
    """``redis-server`` on a free loopback port, no persistence, until the block ends; yields its URL."""
    proc, url = start_redis(data_dir)
    try:
        yield url
    finally:
        stop_process(proc)


def stop_process(proc: Any, timeout: float = 10) -> None:
    """Stop a child process: SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    import subprocess

    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class ServerProcess:
    """``label-studio-ml start TARGET`` in a child process on a free loopback port, log to a file.

    Use as a context manager: waits for ``/health`` to answer 200, always stops the process.
    """

    def __init__(
        self,
        target: str | Path,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        port: int | None = None,
        command: str = "start",
        wait_healthy: bool = True,
        argv: list[str] | None = None,
        cwd: Path | None = None,
        python: str | None = None,
    ) -> None:
        import os
        import sys
        import tempfile

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="lsml-server-", suffix=".log")[1])
        # another interpreter runs a service whose libraries live in another virtualenv (e.g. torch's)
        args = [python or sys.executable, "-m", "label_studio_ml", command, str(target)]
        if command == "start":
            args += ["--host", "127.0.0.1", "-p", str(self.port)]
        self.args = argv or args  # argv: another command serving on self.port (python _wsgi.py, gunicorn)
        self.cwd = cwd
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.wait_healthy = wait_healthy
        self.proc: Any = None

    def start(self) -> ServerProcess:
        import subprocess
        import time

        import requests

        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT)
        if not self.wait_healthy:
            return self
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not healthy after 60 s:\n{self.log_tail()}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None:
            if kill and self.proc.poll() is None:
                self.proc.kill()
            stop_process(self.proc, timeout=15)
        if getattr(self, "_log", None):
            self._log.close()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
