"""``label_studio_ml.api``: what an upstream backend's ``_wsgi.py`` imports, served by core's own app.

``init_app(ModelClass)`` returns a :class:`LabelStudioMLApp`, usable the two ways ``_wsgi.py`` uses it:
``app.run(host=..., port=..., debug=...)`` (``python _wsgi.py``: uvicorn, as ``label-studio-ml start``)
and as the WSGI callable of ``gunicorn --preload ... _wsgi:app`` (the upstream image's command), through
the a2wsgi bridge (see ``wsgi.py``). ``app.asgi`` is the same app for ASGI servers.
"""

from __future__ import annotations

import dataclasses
import hmac
import io
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import Settings
from .model import LabelStudioMLBase
from .server.app import create_app
from .server.logs import RedactSecrets, configure_logging
from .server.wsgi import WSGIBridge
from .training.jobs import TRAIN_EVENTS

__all__ = ["TRAIN_EVENTS", "LabelStudioMLApp", "UpstreamTestClient", "init_app", "safe_str_cmp"]

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0  # test_client() waits this long for load()
# what upstream's generated _wsgi.py passes and core reads elsewhere: REDIS_URL replaces the Redis trio,
# the per-project instance replaces model kwargs
IGNORED_KWARGS = ("redis_queue", "redis_host", "redis_port")


class LabelStudioMLApp:
    """Core's app for one model class: a WSGI callable with ``run()``, as upstream's Flask app is used."""

    def __init__(self, model_class: type[LabelStudioMLBase], settings: Settings) -> None:
        self.model_class = model_class
        self.settings = settings
        self.asgi = create_app(model_class, settings)
        self.wsgi = WSGIBridge(self.asgi)
        self.config: dict[str, Any] = {}  # Flask's app.config: upstream tests set TESTING in it

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return self.wsgi(environ, start_response)

    def test_client(self) -> UpstreamTestClient:
        """Flask's test client, as upstream backends' ``test_api.py`` use it (``with app.test_client() as c``)."""
        return UpstreamTestClient(self)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Start serving in this process (WSGI) and wait until the model loaded or failed to."""
        self.wsgi.start()
        runtime = self.asgi.state.runtime
        deadline = time.monotonic() + timeout
        while runtime.state == "loading":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.model_class.__name__} did not load in {timeout:.0f} s")
            time.sleep(0.01)

    def run(self, host: str = "0.0.0.0", port: int = 9090, debug: bool = False, **_flask_options: Any) -> None:
        """Serve with uvicorn until stopped (Flask's ``app.run`` signature; ``debug`` logs at DEBUG)."""
        import uvicorn

        from .cli.console import port_free
        from .server.serve import uvicorn_options

        if self.wsgi.started:
            raise RuntimeError("this app already serves WSGI requests in this process; run() would load it twice")
        if not port_free(host, port):
            raise SystemExit(f"label-studio-ml: error: port {port} on {host} is already in use; pick another with -p")
        level = "DEBUG" if debug else None
        if debug:
            logging.getLogger().setLevel(logging.DEBUG)
        shown = "localhost" if host in ("0.0.0.0", "::") else host
        logger.info("serving %s on http://%s:%d", self.model_class.__name__, shown, port)
        uvicorn.run(self.asgi, **uvicorn_options(self.settings, host, port, level))  # type: ignore[arg-type]


@dataclasses.dataclass
class ClientResponse:
    """What Flask's test client answers, the parts tests read."""

    status_code: int
    headers: dict[str, str]
    data: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.data) if self.data else None

    def get_json(self) -> Any:
        return self.json

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class UpstreamTestClient:
    """Requests through the app's WSGI side, in this process, with Flask's test-client signature."""

    def __init__(self, app: LabelStudioMLApp) -> None:
        self.app = app

    def __enter__(self) -> UpstreamTestClient:
        self.app.wait_ready()
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def open(
        self,
        path: str,
        method: str = "GET",
        data: str | bytes | None = None,
        json: Any = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> ClientResponse:
        if json is not None:
            data, content_type = _json_dumps(json), content_type or "application/json"
        body = data.encode() if isinstance(data, str) else (data or b"")
        route, _, query = path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method.upper(),
            "PATH_INFO": route,
            "QUERY_STRING": query,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
        }
        if content_type:
            environ["CONTENT_TYPE"] = content_type
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        started: list[tuple[str, list[tuple[str, str]]]] = []
        content = b"".join(self.app(environ, lambda status, sent, exc_info=None: started.append((status, sent))))
        status, sent = started[0]
        return ClientResponse(int(status.split()[0]), {name.lower(): value for name, value in sent}, content)

    def get(self, path: str, **kwargs: Any) -> ClientResponse:
        return self.open(path, "GET", **kwargs)

    def post(self, path: str, **kwargs: Any) -> ClientResponse:
        return self.open(path, "POST", **kwargs)


def _json_dumps(value: Any) -> str:
    return json.dumps(value)


def init_app(
    model_class: type[LabelStudioMLBase],
    basic_auth_user: str | None = None,
    basic_auth_pass: str | None = None,
    **kwargs: Any,
) -> LabelStudioMLApp:
    """Upstream's entry point. Basic auth: the arguments, else ``BASIC_AUTH_USER``/``BASIC_AUTH_PASS``,
    else ``ML_SERVER_BASIC_AUTH_USER``/``ML_SERVER_BASIC_AUTH_PASS``; half of it raises instead of
    serving without auth. ``model_dir`` overrides ``MODEL_DIR``; upstream's Redis keywords are ignored
    (core reads ``REDIS_URL``)."""
    if not (isinstance(model_class, type) and issubclass(model_class, LabelStudioMLBase)):
        raise ValueError(f"init_app needs a subclass of LabelStudioMLBase, got {model_class!r}")
    settings = Settings.from_env()
    user = basic_auth_user or settings.basic_auth_user
    password = basic_auth_pass or settings.basic_auth_pass
    if bool(user) != bool(password):
        raise ValueError(
            "basic auth needs a user and a password: set both ML_SERVER_BASIC_AUTH_USER and "
            "ML_SERVER_BASIC_AUTH_PASS (or BASIC_AUTH_USER and BASIC_AUTH_PASS), or neither"
        )
    changes: dict[str, Any] = {"basic_auth_user": user or "", "basic_auth_pass": password or ""}
    if kwargs.get("model_dir"):
        changes["model_dir"] = Path(str(kwargs.pop("model_dir")))
    unknown = sorted(set(kwargs) - set(IGNORED_KWARGS) - {"model_dir"})
    if unknown:
        logger.warning("init_app ignores %s: core builds one model instance per project", ", ".join(unknown))
    settings = dataclasses.replace(settings, **changes)
    adopt_logging(settings)
    return LabelStudioMLApp(model_class, settings)


def safe_str_cmp(a: str, b: str) -> bool:
    """Upstream's constant-time comparison helper (for user code that checks its own secrets)."""
    return hmac.compare_digest(a.encode(), b.encode())


def adopt_logging(settings: Settings) -> None:
    """Keep the logging a ``_wsgi.py`` configured (its format, its level) and redact secrets from it;
    configure core's own when there is none."""
    root = logging.getLogger()
    if not root.handlers:
        level = os.environ.get("LOG_LEVEL", settings.log_level).upper()
        configure_logging(level, settings.secrets, lean_records=False)
        return
    for handler in root.handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets(settings.secrets))
